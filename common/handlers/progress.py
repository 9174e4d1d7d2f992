"""A config-friendly progress bar for training engines."""

from __future__ import annotations

from collections.abc import Sequence

from ignite.engine import Engine
from ignite.handlers import ProgressBar

__all__ = ["TrainingProgressBar"]


class TrainingProgressBar(ProgressBar):
    """Ignite's tqdm ``ProgressBar`` whose display options are constructor arguments.

    MONAI's workflows attach handlers with ``handler.attach(engine)`` only, so what Ignite takes at attach time
    (the loss to show, metrics, ``engine.state`` attributes such as a ramped consistency weight) is given here.

    Args:
        output_keys: keys of the engine output shown by name (e.g. ``["loss"]``; MONAI's trainers output a dict, or
            a list of dicts after decollation, with the batch value in every item).
        metric_names: names in ``engine.state.metrics`` to show, or ``"all"``.
        state_attributes: names of ``engine.state`` attributes to show (schedules written by other handlers).
        persist: keep the finished bar of each epoch on screen.
        tqdm_kwargs: other arguments of :class:`ignite.handlers.ProgressBar` / tqdm.
    """

    main_process_only = True

    def __init__(
        self,
        output_keys: Sequence[str] | None = ("loss",),
        metric_names: str | Sequence[str] | None = None,
        state_attributes: Sequence[str] | None = None,
        persist: bool = True,
        **tqdm_kwargs,
    ) -> None:
        super().__init__(persist=persist, **tqdm_kwargs)
        self.output_keys = list(output_keys) if output_keys else []
        self.metric_names = metric_names
        self.state_attributes = list(state_attributes) if state_attributes else None

    def _named_outputs(self, output) -> dict:
        # a decollated output repeats the batch value in every item: the first one is enough
        item = output[0] if isinstance(output, list) else output
        return {k: float(item[k]) for k in self.output_keys}

    def attach(self, engine: Engine, *args, **kwargs) -> None:  # type: ignore[override]
        if args or kwargs:  # Ignite's own signature stays usable
            return super().attach(engine, *args, **kwargs)
        names = self.metric_names
        if names is not None and not isinstance(names, str):
            names = list(names)
        super().attach(
            engine,
            metric_names=names,
            output_transform=self._named_outputs if self.output_keys else None,
            state_attributes=self.state_attributes,
        )
