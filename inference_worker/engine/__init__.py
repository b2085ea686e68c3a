"""The engine host: one vLLM engine per worker process, split by responsibility.

Other code imports from here; the modules behind it may move.
"""

from inference_worker.engine.coalescer import Coalescer
from inference_worker.engine.generation import RequestState
from inference_worker.engine.host import EngineHost
from inference_worker.engine.lifecycle import EngineSpec, cpu_engine_env

__all__ = ["Coalescer", "EngineHost", "EngineSpec", "RequestState", "cpu_engine_env"]
