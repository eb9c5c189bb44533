"""PoseDistill stages."""
