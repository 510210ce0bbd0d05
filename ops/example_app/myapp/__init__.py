"""An example application package whose job handlers ship in the taskq image (see ops/Dockerfile)."""
