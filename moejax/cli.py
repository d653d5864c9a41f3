"""The shell every moejax command shares: quiet JAX notices, optional persistent compilation cache,
and bad input as one line on stderr with exit code 2 and no run directory left behind."""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import signal
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import jax
import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from .catalogue import CONF_DIR, add_config_dir
from .engine import distributed, interrupts, peers
from .physics.errors import one_line
from .physics.specs import SpecError


def path_value(field: str, value) -> Path | None:
    """A path given on the command line or in a config (``out=...``): None when null or empty; a
    string (or an integer, which Hydra parses ``out=123`` as) as a ``Path``; anything else (a number
    with a fraction, a list, a mapping, a boolean) a one-line ``SpecError`` naming ``field``."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        shown = value if isinstance(value, str | int | float | bool) else type(value).__name__
        raise SpecError(f"{field} = {shown!r} is invalid: must be a path (a string)")
    return Path(str(value)).expanduser()


def remove_if_empty(run_dir: Path) -> None:
    if run_dir.exists() and not any(run_dir.iterdir()):
        run_dir.rmdir()


_job_started = False  # set by run_command: the config was composed and the command's own job runs
# JAX's warning when two runs compiling the same program into one persistent cache race on its LRU
# bookkeeping (an -atime file read as the other removes it): that write is skipped, the result unchanged;
# any other cache-write error (a full disk) is still printed
CACHE_RACE = r"Error writing persistent compilation cache .*: FileNotFoundError"


def run_command(job: Callable[[Path], str], compilation_cache=None) -> None:
    """Run ``job(run_dir) -> report`` inside a Hydra task and print its report; a ``SpecError``
    becomes ``error: ...`` on stderr and exit code 2; Ctrl-C or SIGTERM becomes one line
    ``interrupted: ...`` and exit code 130 (SIGINT) or 143 (SIGTERM), never raised inside netCDF
    I/O (``engine.interrupts``); once the job has ended, signals are ignored (the process is only
    reporting and exiting: a late one must not kill it half-way). An empty run directory is removed."""
    global _job_started
    _job_started = True  # from here on, an exception that escapes is a bug and keeps its traceback
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.ERROR)  # "no TPU/GPU backend" notices
    if compilation_cache:  # compiled kernels persist across runs (the κ* kernel takes 10-17 s to compile)
        jax.config.update("jax_compilation_cache_dir", str(Path(compilation_cache).expanduser()))
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            warnings.filterwarnings("ignore", CACHE_RACE, UserWarning)
            interrupts.install()
            try:
                report = job(run_dir)
            finally:
                interrupts.ignore()
    except SpecError as e:
        _finish(run_dir, f"error: {one_line(e)}", 2)
    except OmegaConfBaseException as e:  # a value read while running: board_power=??? (mandatory, unset)
        _finish(run_dir, f"error: {one_line(hydra_error_line(e))}", 2)
    except KeyboardInterrupt as e:
        _finish(run_dir, f"interrupted: {e}" if str(e) else "interrupted", 128 + (interrupts.received() or signal.SIGINT))
    _finish(run_dir, report, 0)


def _finish(run_dir: Path, message: str, code: int) -> None:
    """Print the command's one message (its report on stdout, else on stderr) and exit with ``code``;
    in a multi-process run the peers hear of it first (``engine.peers``)."""
    remove_if_empty(run_dir)
    peers.end(code)
    print(message, file=sys.stderr if code else sys.stdout, flush=True)
    peers.leave(code)
    if code:
        sys.exit(code)


def _resolve_overrides(cfg: DictConfig) -> None:
    """``model=NAME`` / ``hardware=NAME`` (Hydra groups over the catalogue) replace the grid's lists."""
    choices = HydraConfig.get().runtime.choices
    for group, field in (("model", "models"), ("hardware", "hardware")):
        if choices.get(group):
            cfg.grid[field] = [choices[group]]


def use_config_dirs() -> None:
    """Catalogue names (models, hardware) resolve in ``--config-dir`` directories too, as Hydra's groups do."""
    for source in HydraConfig.get().runtime.config_sources:
        if source.provider == "command-line" and source.schema == "file":
            add_config_dir(source.path)


ENVIRONMENT = {"num_processes": "MOEJAX_NUM_PROCESSES", "process_id": "MOEJAX_PROCESS_ID"}  # distributed=env


def distributed_settings(node: DictConfig) -> SimpleNamespace:
    """The ``distributed`` config's resolved values; an environment value that does not even parse
    (``oc.decode``) is a one-line error naming the field and its variable."""
    values = {}
    for field in node:
        try:
            values[field] = node[field]
        except OmegaConfBaseException:
            env = ENVIRONMENT.get(field, "the environment")
            given = os.environ.get(env)
            raise SpecError(
                f"distributed.{field} = {given!r} is invalid: must be an integer (set by {env} with distributed=env)"
            ) from None
    return SimpleNamespace(**values)


def grid_job(cfg: DictConfig, filename: str, job, kappa_star: bool = False) -> None:
    """The shell every grid CLI shares: require a grid, apply ``model=``/``hardware=`` choices, turn
    the config into the frozen, validated ``SweepConfig`` (the command boundary: nothing after it
    sees the ``DictConfig``; κ* settings checked with ``kappa_star``), run ``job(config, out) ->
    report``, and turn a ``SpecError`` into one line on stderr, exit code 2, and no files left behind."""

    def grid_run(run_dir: Path) -> str:
        from .engine.dataset import check_output  # here: xarray/netCDF4 cost every CLI's startup, only grid runs need them
        from .schema import sweep_config

        grids = sorted(p.stem for p in (CONF_DIR / "grid").glob("*.yaml"))
        if cfg.grid is None:
            raise SpecError(f"grid is missing: choose one with +grid=NAME, available {', '.join(grids)}")
        if HydraConfig.get().runtime.choices.get("grid") == "grid_schema":  # the schema, not a grid
            raise SpecError(f"grid = 'grid_schema' is invalid: allowed {', '.join(grids)}")
        use_config_dirs()
        try:
            _resolve_overrides(cfg)
            if cfg.distributed is not None:
                distributed.initialize(distributed_settings(cfg.distributed))  # must precede every other use of JAX
            out = path_value("out", cfg.out) or run_dir / filename
            if cfg.out and HydraConfig.get().mode == RunMode.MULTIRUN:  # each job its own file: NAME-<job>.nc
                out = out.with_name(f"{out.stem}-{HydraConfig.get().job.num}{out.suffix}")
            config = sweep_config(cfg, kappa_star)
            check_output(out, config.overwrite)  # before computing
            return job(config, out)
        except OmegaConfBaseException as e:  # a mandatory value left unset (???), an interpolation that fails
            raise SpecError(hydra_error_line(e)) from None

    run_command(grid_run, cfg.compilation_cache)


def _schema_type(full_key: str):
    """The declared type of a dotted config key (``grid.num_gpus[0]``), from the structured
    schemas; None where the schema leaves it open (``Any``) or the key is unknown."""
    import typing

    from .schema import GridConf, SweepConf

    node, indexed = SweepConf, full_key.endswith("]")
    for part in full_key.split("[")[0].split("."):
        fields = typing.get_type_hints(node) if dataclasses.is_dataclass(node) else {}
        node = GridConf if (node is SweepConf and part == "grid") else fields.get(part)
        args = [a for a in typing.get_args(node) if a is not type(None)]
        if typing.get_origin(node) is typing.Union and len(args) == 1:
            node = args[0]
    if indexed and typing.get_origin(node) is list:
        node = typing.get_args(node)[0]
    return node


def _describe(kind) -> str | None:
    import typing

    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    if typing.get_origin(kind) is list:
        inner, example = {int: ("integers", "[8,16]"), float: ("numbers", "[1,2.5]"), str: ("strings", "[a,b]")}.get(
            typing.get_args(kind)[0], ("values", "[a,b]")
        )
        return f"a list of {inner}, e.g. {example}"
    if dataclasses.is_dataclass(kind):
        return f"a mapping with keys {', '.join(f.name for f in dataclasses.fields(kind))}"
    return names.get(kind)


def hydra_error_line(e: Exception) -> str:
    """One line ``<field> = <value> is invalid: <allowed>`` for a Hydra/OmegaConf composition error."""
    from hydra.errors import MissingConfigException, OverrideParseException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, MissingMandatoryValue

    def first(x) -> str:
        return str(x).strip().splitlines()[0] if str(x).strip() else type(x).__name__

    if isinstance(e, yaml.YAMLError):  # a config file of a group (--config-dir, conf/) that does not parse
        mark = getattr(e, "problem_mark", None)
        where = f"{mark.name}: " if mark else ""
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        return f"{where}is not valid YAML{at}: {getattr(e, 'problem', None) or first(e)}"
    if isinstance(e, MissingConfigException) and e.missing_cfg_file and "/" in e.missing_cfg_file:
        group, _, name = e.missing_cfg_file.rpartition("/")
        real = [o for o in e.options or [] if not o.endswith("_schema")]  # the schemas are internal
        return f"{group} = {name!r} is invalid: allowed {', '.join(real) or '(none found)'}"
    if isinstance(e, OverrideParseException):
        from hydra.core.override_parser.overrides_parser import OverridesParser

        for arg in sys.argv[1:]:
            try:
                OverridesParser.create().parse_override(arg)
            except Exception:  # noqa: BLE001 - this is the one that does not parse
                return f"override {arg!r} is invalid: {first(e)} (Hydra override syntax: key=value, lists [a,b])"
        return f"override is invalid: {first(e)}"
    if "No match in the defaults list" in str(e):  # grid=NAME where +grid=NAME is meant
        group = str(e).split("'")[1] if str(e).count("'") >= 2 else "?"
        given = next((a for a in sys.argv[1:] if a.startswith(f"{group}=")), f"{group}=...")
        return f"{group} = {given.partition('=')[2]!r} is invalid: {group} has no default to override; write +{given}"
    if "Config group override must be a string or a list" in str(e):  # model=1: Hydra's ValueError
        return _group_value_line()
    if isinstance(e, MissingMandatoryValue) and e.full_key:  # ``???`` read while running (board_power=???)
        allowed = _describe(_schema_type(e.full_key))
        return f"{e.full_key} is missing: it is required" + (f" ({allowed})" if allowed else "")
    if "full_key: " in str(e) and not isinstance(e.__cause__, OmegaConfBaseException):  # a config file's bad value
        key = str(e).split("full_key: ")[1].split()[0]
        value = str(e).splitlines()[1].rpartition(": ")[2].strip("'") if len(str(e).splitlines()) > 1 else "?"
        if key.startswith("grid.dtypes."):
            from .catalogue import DTYPE_BYTES

            return f"{key} = {value} is invalid: allowed {', '.join(DTYPE_BYTES)} (or null)"
        allowed = _describe(_schema_type(key))
        return f"{key} = {value} is invalid: " + (f"must be {allowed}" if allowed else first(e))
    cause = e if isinstance(e, OmegaConfBaseException) else e.__cause__
    if isinstance(cause, OmegaConfBaseException) and cause.full_key:
        key = cause.full_key
        if isinstance(cause, ConfigAttributeError | ConfigKeyError):
            parent = _schema_type(key.rpartition(".")[0]) if "." in key else _schema_type("")
            known = [f.name for f in dataclasses.fields(parent)] if dataclasses.is_dataclass(parent) else []
            if not known and isinstance(getattr(cause, "parent_node", None), DictConfig):  # a plain mapping of the config
                known = [str(k) for k in cause.parent_node.keys()]
            return f"{key} is not a known field" + (f": allowed {', '.join(known)}" if known else f": {first(cause)}")
        allowed = _describe(_schema_type(key))
        if isinstance(cause, MissingMandatoryValue):
            return f"{key} is missing: it is required" + (f" ({allowed})" if allowed else "")
        return f"{key} = {cause.value!r} is invalid: " + (f"must be {allowed}" if allowed else first(cause))
    return f"config is invalid: {first(e)}" + (f" ({first(e.__cause__)})" if e.__cause__ else "")


def _group_value_line() -> str:
    """``model=1`` or ``accounting=[8.5]``: a config group given a number or a list holding one,
    which Hydra reports as a ValueError or a TypeError."""
    for arg in sys.argv[1:]:
        key, _, value = arg.lstrip("+~").partition("=")
        if (CONF_DIR / key).is_dir():
            items = value.strip("[]").split(",") if value.startswith("[") else [value]
            numbers = []
            for item in items:
                try:
                    float(item)
                    numbers.append(item)
                except ValueError:
                    continue
            if not numbers:
                continue
            names = sorted(p.stem for p in (CONF_DIR / key).glob("*.yaml") if not p.stem.endswith("_schema"))
            return f"{key} = {value} is invalid: allowed {', '.join(names)}"
    return "a config group override is invalid: it must be a name (a string) or a list of names"


def mode_may_be_set(args: list[str]) -> bool:
    """Whether a command line could set ``hydra.mode``: an override naming it, or a config of the
    user's own (``--config-dir``, ``--config-path``, ``--config-name``). Hydra composes the whole
    config once only to read that key (``Hydra.get_mode``, then composes again to run); no moejax
    config sets it, so without these it is None, and ``-m``/``--multirun`` decides, as Hydra then
    does. Skipping that composition saves 0.1-0.2 s per command (half of a refusal's time
    in-process, 2026-12-07)."""
    return any("hydra.mode" in a or a.startswith(("-c", "--config", "--experimental")) for a in args)


def one_line_errors(main: Callable) -> Callable:
    """Wrap a ``hydra.main`` entry point: a config composition error (unknown group option, type
    mismatch, unknown key, bad override syntax) becomes one ``error: ...`` line on stderr and exit
    code 2 instead of Hydra's multi-line report. Hydra reports these inside its private
    ``run_and_report``; it is wrapped for the duration of the call (``HYDRA_FULL_ERROR=1`` keeps
    Hydra's own report). These private names are why pyproject.toml pins hydra-core to 1.3.x;
    tests/test_bad_input.py checks the behaviour on the installed version. Hydra's ``get_mode``
    is skipped where no ``hydra.mode`` can be set (``mode_may_be_set``)."""
    from hydra._internal import utils as hydra_utils
    from hydra._internal.hydra import Hydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    def reported(func, *args):
        try:
            return func(*args)
        except (HydraException, OmegaConfBaseException, yaml.YAMLError) as e:
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            print(f"error: {one_line(hydra_error_line(e))}", file=sys.stderr)
            sys.exit(2)
        except ValueError as e:  # Hydra's own check of a group override (model=1)
            if "Config group override" not in str(e) or os.environ.get("HYDRA_FULL_ERROR") == "1":
                if not _job_started and os.environ.get("HYDRA_FULL_ERROR") != "1":
                    composition_error(e)
                raise
            print(f"error: {one_line(hydra_error_line(e))}", file=sys.stderr)
            sys.exit(2)
        except Exception as e:  # noqa: BLE001 - only while Hydra composes: the command's own errors keep their traceback
            if _job_started or os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            composition_error(e)

    def composition_error(e: Exception):
        """Hydra failing inside its own code on an odd override (``+accounting=[8.5]``: a TypeError
        deep in its defaults list): one line naming the override when one is recognisably at fault."""
        line = _group_value_line()
        if line.startswith("a config group override is invalid"):
            line = f"config is invalid: {type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
        print(f"error: {one_line(line)}", file=sys.stderr)
        sys.exit(2)

    def parser():  # argparse's own errors (an option after the overrides): one line too
        p = make_parser()
        p.error = lambda message: (
            print(
                f"error: command line is invalid: {one_line(message)} (options such as --config-dir go before the overrides)",
                file=sys.stderr,
            ),
            sys.exit(2),
        )
        return p

    hydra_main = sys.modules["hydra.main"]
    make_parser = hydra_main.get_args_parser
    real_get_mode = Hydra.get_mode

    @functools.wraps(main)
    def wrapped():
        global _job_started
        _job_started = False
        original = hydra_utils.run_and_report
        hydra_utils.run_and_report = lambda func: original(lambda: reported(func))
        hydra_main.get_args_parser = parser
        if not mode_may_be_set(sys.argv[1:]):
            Hydra.get_mode = lambda self, config_name, overrides: None
        try:
            return reported(main)
        finally:
            hydra_utils.run_and_report, hydra_main.get_args_parser = original, make_parser
            Hydra.get_mode = real_get_mode

    return wrapped
