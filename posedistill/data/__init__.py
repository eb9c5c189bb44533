"""PoseDistill data."""
