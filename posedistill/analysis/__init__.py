"""PoseDistill analysis."""
