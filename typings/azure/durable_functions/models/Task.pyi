from typing import Any

class TaskBase:
    id: int | str | None
    is_played: bool
    result: Any
    def __getattr__(self, name: str) -> Any: ...  # incomplete: state, parent, actions, ...

def __getattr__(name: str) -> Any: ...  # incomplete: AtomicTask, CompoundTask, TaskState, ...
