"""The bundle runner's command line made safe: unknown overrides refused, user errors printed last and short.

MONAI's runner (``python -m monai.bundle run``) turns every ``--<name> <value>`` it does not consume itself into a
config override, and adds a key the configs never define without a word: ``--help`` becomes ``help: True`` and the
300-epoch recipe starts; ``--epoch 5`` (for ``epochs``) is ignored the same way. And an error raised inside a config
expression reaches the user inside two chained tracebacks whose last line is MONAI's
``RuntimeError: Failed to evaluate ConfigExpression``. Every bundle's ``initialize`` therefore starts with
``$common.bundle.check_command_line()``, which does both jobs:

- it refuses a top-level override that the layered config files do not define, naming the closest key;
- started as ``python -m monai.bundle``, it makes Ctrl-C stop the run within seconds (:mod:`.interrupt`);
- it installs a ``sys.excepthook`` that prints a user error (:class:`BundleInputError`, the input checks'
  ``DataValidationError``, a missing file or folder) as its own message on the last lines, with a three-line
  header instead of the traceback; ``LEB_DEBUG=1`` restores Python's full traceback.
"""

from __future__ import annotations

import difflib
import inspect
import os
import sys
import traceback
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from .interrupt import install_prompt_interrupt

__all__ = [
    "BundleInputError",
    "DEBUG_ENV",
    "check_command_line",
    "check_overrides",
    "install_error_hook",
    "runner_overrides",
    "user_error_of",
]

DEBUG_ENV = "LEB_DEBUG"
"""Environment variable: set to 1 to see Python's full traceback of a user error."""

# words a user types for a boolean switch; the runner keeps them as text (only Python's True/False become booleans)
_BOOLEAN_WORDS = {"true": True, "false": False, "yes": True, "no": False, "on": True, "off": False}

_DOCS_HINT = (
    "a bundle's keys, their defaults and its commands are in its model card ({card}) and in the repository "
    "README's Quick start and Training sections"
)


class BundleInputError(ValueError):
    """A problem with what the user gave (command line, data folder), whose message says what to do.

    Raised by the bundle's own checks; :func:`install_error_hook` prints its message as the last lines of the output.
    Other error classes join by setting the class attribute ``user_facing = True`` (``DataValidationError`` does).
    """

    user_facing = True


def _is_user_error(error: BaseException) -> bool:
    # a class attribute rather than an import of every error type: the data checks' ``DataValidationError`` says so
    # itself, and this module (vendored into every export) stays free of the data readers' dependencies
    return isinstance(error, FileNotFoundError | NotADirectoryError) or bool(getattr(error, "user_facing", False))


def user_error_of(error: BaseException) -> BaseException | None:
    """The user error an exception carries: itself, or the first one in its ``__cause__``/``__context__`` chain.

    MONAI's ``ConfigExpression`` re-raises every error as ``RuntimeError(...) from error``; this finds the original.

    Args:
        error: an exception that reached the top of the program.

    Returns:
        the first error in the chain whose class sets ``user_facing = True`` (:class:`BundleInputError`, the input
        checks' ``DataValidationError``) or that is a ``FileNotFoundError``/``NotADirectoryError``; None when there
        is none (a bug, whose traceback is then printed whole).
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if _is_user_error(current):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _short_report(error: BaseException, user_error: BaseException) -> str:
    where = ""
    frames = traceback.extract_tb(user_error.__traceback__)
    if frames:
        last = frames[-1]
        where = f" (raised in {Path(last.filename).name}:{last.lineno}, {last.name})"
    header = [
        f"Stopped: {type(user_error).__name__}{where}.",
        f"Set {DEBUG_ENV}=1 for the full traceback ({type(error).__name__} from the bundle runner).",
        "",
    ]
    return "\n".join(header) + f"{type(user_error).__name__}: {user_error}\n"


def _excepthook(
    exc_type: type[BaseException], error: BaseException, tb: TracebackType | None, previous: Any = None
) -> None:
    user_error = None if os.environ.get(DEBUG_ENV, "") not in ("", "0") else user_error_of(error)
    if user_error is None:
        (previous or sys.__excepthook__)(exc_type, error, tb)
        return
    sys.stderr.write(_short_report(error, user_error))
    sys.stderr.flush()


def install_error_hook() -> None:
    """Make an uncaught user error print as its own message on the last lines (idempotent).

    Errors that carry no user error (see :func:`user_error_of`) keep the hook that was installed before, so bugs
    still show their traceback. With ``LEB_DEBUG=1`` every error shows its full traceback.
    """
    if getattr(sys.excepthook, "_leb_error_hook", False):
        return
    previous = sys.excepthook

    def hook(exc_type: type[BaseException], error: BaseException, tb: TracebackType | None) -> None:
        _excepthook(exc_type, error, tb, previous)

    hook._leb_error_hook = True  # type: ignore[attr-defined]
    sys.excepthook = hook


def _create_workflow_frame() -> FrameType | None:
    from monai.bundle import scripts

    code = scripts.create_workflow.__code__
    frame = inspect.currentframe()
    while frame is not None:
        if frame.f_code is code:
            return frame
        frame = frame.f_back
    return None


def runner_overrides() -> tuple[dict[str, Any], Any] | None:
    """The overrides and config files of the bundle run in progress, as MONAI's runner received them.

    MONAI's ``run`` (and ``run_workflow``) build the workflow in ``create_workflow``, whose ``_args`` hold the
    command line's and ``--args_file``'s key-value pairs; the workflow class consumes its own arguments
    (``meta_file``, ``logging_file``, ``init_id``, ``run_id``, ``final_id``, ``tracking``, ...) and hands the rest to
    the config as overrides. This reads them from that call while the workflow initialises.

    Returns:
        ``(overrides, config_file)``: the pairs that become config overrides (with ``tracking`` kept when given, so
        that its settings' keys can be allowed), and the config file(s); None when no runner call is in progress
        (a config parsed from Python, e.g. by MONAI Label or a test, has no command line to check).
    """
    frame = _create_workflow_frame()
    if frame is None:
        return None
    args = dict(frame.f_locals.get("_args", {}))
    workflow_class = frame.f_locals.get("workflow_class")
    consumed = {"config_file", "workflow_name"}
    if workflow_class is not None:
        consumed |= {
            name
            for name, p in inspect.signature(workflow_class.__init__).parameters.items()
            if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        }
    overrides = {k: v for k, v in args.items() if k not in consumed or k == "tracking"}
    return overrides, frame.f_locals.get("config_file")


def _tracking_keys(tracking: Any) -> set[str]:
    # MONAI adds the tracking settings' "configs" entries (output_dir, experiment_name, run_name, ...) as top-level
    # keys, and documents them as overridable from the command line
    from monai.bundle import ConfigParser
    from monai.bundle.utils import DEFAULT_EXP_MGMT_SETTINGS

    if tracking is None:
        return set()
    if isinstance(tracking, str) and tracking in DEFAULT_EXP_MGMT_SETTINGS:
        settings = DEFAULT_EXP_MGMT_SETTINGS[tracking]
    elif isinstance(tracking, Mapping):
        settings = tracking
    else:
        settings = ConfigParser.load_config_files(tracking)
    return set(settings.get("configs", {}))


def check_overrides(
    overrides: Iterable[str] | Mapping[str, Any],
    defined: Iterable[str] | Mapping[str, Any],
    config_files: str = "the configs",
    model_card: str = "bundles/<name>/docs/README.md",
) -> None:
    """Refuse overrides whose top-level key the configs do not define, and switches given as text.

    ``a#b#c`` overrides a nested id; its top-level part ``a`` must exist (a config may add nested ids of its own,
    as ``multi_gpu_train.json`` adds ``train#sampler``). The runner reads ``--use_dmr False`` as the boolean
    ``False`` but ``--use_dmr false`` as the text ``'false'``, which every ``$`` expression takes as true: such a word
    given to a key whose default is not plain text (a boolean, a number, an expression) is refused, naming the
    spelling that works.

    Args:
        overrides: the override ids of the command line, or a mapping of them to their values (then their values
            are checked too).
        defined: the top-level keys of the layered config files, or the merged config itself (then the defaults
            are known and boolean switches given as text are refused).
        config_files: how to name the config files in the message.
        model_card: the bundle's model card, named by the message.

    Raises:
        BundleInputError: naming each unknown key with the closest defined key; ``--help`` points at the docs; a
            boolean switch given as ``true``/``false``/``yes``/``no``/``on``/``off`` text.
    """
    defaults = defined if isinstance(defined, Mapping) else {}
    values = overrides if isinstance(overrides, Mapping) else {}
    defined = sorted(set(defined))
    docs = _DOCS_HINT.format(card=model_card)
    lines = []
    for key in overrides:
        top = str(key).split("#", 1)[0]
        if top in defined:
            value, default = values.get(key), defaults.get(key)
            word = value.strip().lower() if isinstance(value, str) else None
            # a key whose default is plain text may take these words; any other (a boolean, a number, a `$`
            # expression such as "amp": "$torch.cuda.is_available()") meant a boolean
            is_text_key = isinstance(default, str) and not default.startswith(("$", "@", "%"))
            if word in _BOOLEAN_WORDS and key in defaults and not is_text_key:
                spelled = "True" if _BOOLEAN_WORDS[word] else "False"
                lines.append(
                    f"--{key} {value}: the command line passes {value!r} as text, which counts as true; "
                    f"write --{key} {spelled}"
                )
            continue
        if top in ("help", "h"):
            lines.append(f"--{key}: a bundle run has no help option")
            continue
        close = difflib.get_close_matches(top, defined, n=1, cutoff=0.6)
        hint = f"did you mean --{close[0]}?" if close else f"the keys are: {', '.join(defined)}."
        lines.append(f"--{key}: {config_files} define no key {top!r}; {hint}")
    if lines:
        raise BundleInputError(
            "command-line override(s) refused, nothing was run:\n  " + "\n  ".join(lines) + f"\n({docs})"
        )


def _started_as_bundle_command() -> bool:
    # `python -m monai.bundle ...` (also under torchrun); not a Python session or a test that runs a workflow
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return getattr(spec, "name", None) == "monai.bundle.__main__"


def check_command_line() -> bool:
    """Install the error hook and refuse unknown overrides of the bundle run in progress (first ``initialize`` item).

    Started as ``python -m monai.bundle``, it also makes Ctrl-C stop the run within seconds
    (:func:`common.bundle.interrupt.install_prompt_interrupt`).

    Returns:
        True when a command line was checked, False when the config is not being run by MONAI's runner.

    Raises:
        BundleInputError: an override names a top-level key that none of the config files defines.
    """
    install_error_hook()
    if _started_as_bundle_command():
        install_prompt_interrupt()
    found = runner_overrides()
    if found is None:
        return False
    overrides, config_file = found
    from monai.bundle import ConfigParser

    files = [config_file] if isinstance(config_file, str | os.PathLike) else list(config_file or [])
    if not files:
        return False
    config = dict(ConfigParser.load_config_files(files))
    config.setdefault("_meta_", {})
    for key in _tracking_keys(overrides.pop("tracking", None)):
        config.setdefault(key, None)
    names = " + ".join(Path(f).name for f in files)
    card = Path(files[0]).parent.parent / "docs" / "README.md"
    check_overrides(overrides, config, config_files=names, model_card=str(card))
    return True
