"""`sparsedd predict MODEL IMAGE…`: the class of each image by an exported model."""

from __future__ import annotations

import click


@click.command()
@click.argument("model_file", type=click.Path(dir_okay=False))
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False))
def predict(model_file: str, images: tuple[str, ...]) -> None:
    """Print each IMAGE's path, a tab and its predicted class name, one line per image.

    MODEL_FILE is a .safetensors file written by `sparsedd export --run`; images of any size
    and format Pillow reads are prepared exactly as in training (the file says how).
    """
    from pathlib import Path

    from sparsedd.errors import UserError
    from sparsedd.export.predict import predict as classify

    if not Path(model_file).is_file():
        raise UserError(f"model file {model_file} does not exist; write one with `sparsedd export`")
    for path, name in classify(model_file, images):
        click.echo(f"{path}\t{name}")
