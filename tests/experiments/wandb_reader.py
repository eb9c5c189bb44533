"""Reads an offline W&B run file (`run-<id>.wandb`): a 7-byte header, then LevelDB-log records
(4-byte CRC, 2-byte little-endian length, 1-byte type) in 32 KiB blocks, each a `Record` protobuf."""
from __future__ import annotations

import json
import struct
from pathlib import Path

from wandb.proto import wandb_internal_pb2 as pb

BLOCK = 32768
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> list[pb.Record]:
    raw = Path(path).read_bytes()
    if raw[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B run file")
    out, pos, chunks = [], HEADER, []
    while pos + HEADER <= len(raw):
        if BLOCK - pos % BLOCK < HEADER:  # block trailer padding
            pos += BLOCK - pos % BLOCK
            continue
        _crc, length, kind = struct.unpack("<IHB", raw[pos:pos + HEADER])
        data = raw[pos + HEADER:pos + HEADER + length]
        pos += HEADER + length
        if kind == 0 and length == 0:
            break
        chunks.append(data)
        if kind in (FULL, LAST):
            rec = pb.Record()
            rec.ParseFromString(b"".join(chunks))
            out.append(rec)
            chunks = []
    return out


def run_contents(path: Path) -> dict:
    """Config, final summary, history rows and logged file paths of an offline run."""
    config, summary, history, files = {}, {}, [], []
    for rec in records(path):
        kind = rec.WhichOneof("record_type")
        if kind in ("config", "run"):  # wandb.init(config=...) arrives in the run record
            for item in (rec.config if kind == "config" else rec.run.config).update:
                config[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
        elif kind == "summary":
            for item in rec.summary.update:
                summary[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
        elif kind == "history":
            history.append({(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in rec.history.item})
        elif kind == "files":
            files += [f.path for f in rec.files.files]
    return {"config": config, "summary": summary, "history": history, "files": files}
