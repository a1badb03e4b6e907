# The image a compiled Kubeflow spec names (KubeflowV2DagRunnerConfig default_image): KFP runs each TFX
# component in it, and the same image is Beam's worker SDK container on Dataflow/Flink/Spark.
# Debian 12 (glibc 2.36): the lock in requirements.txt is verified there, see docs/design.md §8.
FROM python:3.11-slim-bookworm

# Beam's container boot (worker harness entrypoint); its tag is the apache-beam version pinned in requirements.txt.
# KFP sets its own command for component pods, so this entrypoint does not get in its way.
COPY --from=apache/beam_python3.11_sdk:2.77.0 /opt/apache/beam /opt/apache/beam

ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
WORKDIR /pipeline

# Dependencies first: this layer is rebuilt only when the lock or the interpreter hook changes.
# Installed like `make setup`: the complete lock without the resolver, then the .pth hook that Beam worker
# processes need (TF_USE_LEGACY_KERAS, tfx_bsl sql_util stand-in), then the same import check. The check runs
# before TF_USE_LEGACY_KERAS is set below, so it proves the hook sets it.
COPY requirements.txt ./
COPY envsetup/ envsetup/
RUN pip install --no-deps --no-cache-dir -r requirements.txt \
    && python envsetup/install_hook.py \
    && python -c "import os, tfx, tensorflow_data_validation, tensorflow_recommenders, scann; assert os.environ['TF_USE_LEGACY_KERAS'] == '1'"

# Project code: the packages the pipeline, its components and the model code import at run time.
COPY schema/ schema/
COPY reports/ reports/
COPY models/ models/
COPY components/ components/
COPY listening_logs/ listening_logs/
COPY serving/ serving/
COPY pipeline/ pipeline/

ENV PYTHONPATH=/pipeline TF_USE_LEGACY_KERAS=1

ENTRYPOINT ["/opt/apache/beam/boot"]
