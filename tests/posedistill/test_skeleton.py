"""Skeletons, flips, joint maps and bone utilities."""
import numpy as np
import torch

from posedistill.skeleton import (COMMON15, H36M17, PAPER17, bone_lengths, bone_vectors, canonicalize, chain_bones,
                                  flip_pose, h36m32_to_paper17)


def test_skeleton_structure():
    assert PAPER17.n_joints == H36M17.n_joints == 17
    assert len(PAPER17.bones) == 16
    for sk in (PAPER17, H36M17):
        perm = sk.flip_perm
        assert (perm[perm] == np.arange(17)).all()  # involution
        names = [sk.joint_names[i] for i in perm]
        assert all(a.replace("l_", "r_") == b.replace("l_", "r_") for a, b in zip(sk.joint_names, names))
    assert PAPER17.bone_lengths[8] / PAPER17.bone_lengths[1] == 2.0 / 4.75  # code ratios
    assert len(COMMON15) == 15


def test_flip_is_an_involution_that_preserves_bone_lengths():
    pose = torch.randn(5, 17, 3) * 300
    flipped = flip_pose(pose)
    assert torch.equal(flip_pose(flipped), pose)
    assert torch.equal(flipped[:, 0, 0], -pose[:, 0, 0])
    lb, lf = bone_lengths(pose), bone_lengths(flipped)
    # bone b of the flipped pose is the mirror bone of b
    mirror = [PAPER17.bones.index((PAPER17.flip_perm[p], PAPER17.flip_perm[j])) for p, j in PAPER17.bones]
    torch.testing.assert_close(lf, lb[:, mirror])


def test_chain_bones_inverts_bone_vectors_and_canonicalize():
    pose = torch.randn(4, 17, 3) * 200
    pose = pose - pose[:, :1]
    torch.testing.assert_close(chain_bones(bone_vectors(pose)), pose)
    canon = canonicalize(pose)
    torch.testing.assert_close(bone_lengths(canon), torch.as_tensor(PAPER17.canonical_bones).expand(4, 16))


def test_h36m32_map_uses_hip_midpoint_as_pelvis():
    x = np.random.default_rng(0).normal(size=(2, 32, 3))
    p = h36m32_to_paper17(x)
    np.testing.assert_allclose(p[:, 0], 0.5 * (x[:, 1] + x[:, 6]))
    np.testing.assert_allclose(p[:, 8], x[:, 15])  # head_top
    np.testing.assert_allclose(p[:, 12], x[:, 4])  # r_foot = RToeBase
    np.testing.assert_allclose(p[:, 16], x[:, 9])  # l_foot = mirror of RToeBase
