"""Built-in metric sinks: ``jsonl`` (metrics.jsonl, one JSON object per epoch) and ``tensorboard``
(event files in the run directory; needs the optional extra ``tensorboard``)."""

from __future__ import annotations

from typing import IO, Any

from aits import jsonio
from aits.errors import UserError
from aits.hookspecs import hookimpl
from aits.interfaces import MetricSink
from aits.registry import Registrar
from aits.sinks import scalars


class JsonlSink(MetricSink):
    """metrics.jsonl in the run directory: one JSON object per epoch, appended and flushed."""

    name = "jsonl"
    file: IO[str] | None = None

    def start(self, config: dict[str, Any], first_epoch: int) -> None:
        self.file = (self.run_dir / "metrics.jsonl").open("a")

    def epoch(self, metrics: dict[str, Any]) -> None:
        self.file.write(jsonio.dumps(metrics) + "\n")
        self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


class TensorBoardSink(MetricSink):
    """TensorBoard event files in the run directory: every metric per epoch, config and summary as text."""

    name = "tensorboard"
    writer: Any = None

    @classmethod
    def check(cls) -> None:
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            raise UserError("logging.sinks: tensorboard needs the tensorboard package: "
                            "pip install 'aits[tensorboard]'") from None

    def start(self, config: dict[str, Any], first_epoch: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # a resumed run redoes the epochs from first_epoch on: drop what an earlier process wrote for them
        self.writer = SummaryWriter(str(self.run_dir), purge_step=first_epoch if first_epoch > 1 else None)
        if first_epoch == 1:
            self.writer.add_text("config", _code(jsonio.dumps(config, indent=2)), 0)

    def epoch(self, metrics: dict[str, Any]) -> None:
        for key, value in scalars(metrics).items():
            self.writer.add_scalar(key, value, metrics["epoch"])
        self.writer.flush()

    def finish(self, summary: dict[str, Any]) -> None:
        self.writer.add_text("summary", _code(jsonio.dumps(summary, indent=2)), summary["epochs"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _code(text: str) -> str:
    """Text shown verbatim by TensorBoard's markdown renderer."""
    return "\n".join("    " + line for line in text.splitlines())


@hookimpl
def aits_register(registrar: Registrar) -> None:
    registrar.metric_sink(JsonlSink)
    registrar.metric_sink(TensorBoardSink)
