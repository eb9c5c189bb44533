"""PoseDistill models."""
