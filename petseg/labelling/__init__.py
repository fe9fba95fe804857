"""petseg and Label Studio: pre-annotations from the served model (the ML backend and the bulk
tasks file), in the regions Label Studio's own brush and polygon tools edit."""
