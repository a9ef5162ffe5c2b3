"""Running the training pipeline: compiled once, then run locally, in this process, or on a cluster.

`package` compiles the pipeline and edits the compiled package, `local` runs it
under kfp.local (`steplog` reads what kfp.local prints meanwhile), `inprocess`
calls its steps' functions directly (tests and benchmarks), and `cluster` starts
a run on Kubeflow Pipelines and follows it. The names callers use are here.
"""

from flywheel.runs.cluster import (
    ENDED,
    RunStatus,
    SubmitError,
    ended_runs,
    registration,
    run_status,
    submit,
)
from flywheel.runs.inprocess import InProcessRun, run_in_process
from flywheel.runs.local import LocalRun, StepUsage, run_local, step_usages
from flywheel.runs.package import (
    PACKAGE_FILE,
    compile_package,
    compile_text,
    customise,
    dump_package,
    executors,
    new_run_id,
    write_package,
)
from flywheel.runs.steplog import StepState

__all__ = [
    "ENDED",
    "PACKAGE_FILE",
    "InProcessRun",
    "LocalRun",
    "RunStatus",
    "StepState",
    "StepUsage",
    "SubmitError",
    "compile_package",
    "compile_text",
    "customise",
    "dump_package",
    "ended_runs",
    "executors",
    "new_run_id",
    "registration",
    "run_in_process",
    "run_local",
    "run_status",
    "step_usages",
    "submit",
    "write_package",
]
