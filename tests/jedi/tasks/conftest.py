"""Lets the task tests share helpers (e.g. the hand-built bistable teacher) by module import."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
