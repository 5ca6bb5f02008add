"""gunicorn settings for running Checkpoint under a plain gunicorn: the ones `checkpoint serve` uses.

    checkpoint db upgrade                                   # plain gunicorn does not migrate
    export PROMETHEUS_MULTIPROC_DIR=/run/checkpoint-metrics # an empty directory, emptied before each start
    gunicorn -c deploy/gunicorn.conf.py 'checkpoint:create_app()'

Why each value: docs/deploy.md, "Plain gunicorn" (figures from benchmarks/README.md).
tests/integration/test_deploy.py checks that these equal checkpoint.edge.serving.default_options.
"""

import multiprocessing

from checkpoint.runtime.metrics import child_exit  # noqa: F401 - a gunicorn server hook, found by its name

# `--bind` on the command line wins over this file, as every gunicorn flag does.
bind = "0.0.0.0:5000"
# gthread, except that a busy keep-alive connection keeps its thread (checkpoint/edge/serving.py).
worker_class = "checkpoint.edge.serving.ProxyWorker"
# One per CPU this process may use, at most 4; in a container set it to the container's CPUs.
workers = min(4, multiprocessing.cpu_count())
# Each call in flight, a long stream included, holds one thread.
threads = 32
# How long an idle keep-alive connection stays open between calls (ProxyWorker closes idle ones at once on SIGTERM).
keepalive = 5
# The worker heartbeat only; it does not limit how long a stream may take.
timeout = 120
# Calls in flight get this long to finish on SIGTERM.
graceful_timeout = 60
# JSON lines with the request id (CHECKPOINT_LOG_FORMAT=text for the classic format).
logger_class = "checkpoint.runtime.logs.GunicornLogger"
errorlog = "-"
accesslog = "-"
proc_name = "checkpoint"
# gunicorn 26's control socket is one path per user: two servers on one host would share it.
control_socket_disable = True
