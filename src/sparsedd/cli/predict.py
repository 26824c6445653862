"""`sparsedd predict MODEL IMAGE…`: the class of each image by an exported model."""

from __future__ import annotations

from pathlib import Path

import click

from sparsedd.errors import UserError

# `sparsedd --help` imports only what it needs; the rest is imported inside the commands that
# use it (torch alone takes 4.4 s to import; measured: docs/architecture.md, "Imports").


@click.command()
@click.argument("model_file", type=click.Path(dir_okay=False))
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False))
def predict(model_file: str, images: tuple[str, ...]) -> None:
    """Print each IMAGE's path, a tab and its predicted class name, one line per image.

    Tabs, newlines and other control characters in paths and names are printed escaped
    (``\\t``, ``\\x1b``), so that every line keeps two columns.

    MODEL_FILE is a .safetensors file written by `sparsedd export --run`; images of any size
    and format Pillow reads are prepared exactly as in training (the file says how).
    """
    from sparsedd.data.preprocess import printable
    from sparsedd.export.predict import predict as classify

    shown = printable(model_file)
    if not Path(model_file).exists():
        raise UserError(f"model file {shown} does not exist; write one with `sparsedd export`")
    if not Path(model_file).is_file():
        raise UserError(
            f"model file {shown} is not a regular file (a folder, pipe or device); give the "
            f".safetensors file that `sparsedd export` wrote"
        )
    for path, name in classify(model_file, images):
        # tabs, newlines and terminal escapes in a name would break the columns
        click.echo(f"{printable(path)}\t{printable(name)}")
