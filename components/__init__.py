"""Custom TFX components of the pipeline."""

ARTIFACT_TYPE_NAMESPACE = "music_retrieval"
"""Our artifact types are named `<namespace>.<Type>`: Kubeflow V2 only compiles custom types named that way."""
