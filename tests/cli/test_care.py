"""Small things that read as care: plain YAML from `presets`, the wrong-preset error lists the
studies, the report shows only keys the runs' models read, a note on a timm stem too coarse."""

from __future__ import annotations

import json

import yaml
from support import assert_refused_unchanged, run_cli


def test_presets_of_a_study_print_plain_yaml(capsys) -> None:
    code, text, _ = run_cli(["presets", "quetu2023"], capsys)
    assert code == 0 and "&id" not in text and "*id" not in text
    code, as_json, _ = run_cli(["presets", "quetu2023", "--format", "json"], capsys)
    assert yaml.safe_load(text) == json.loads(as_json)


def test_a_wrong_preset_lists_presets_and_studies(tmp_path, capsys) -> None:
    args = ["run", "--preset", "quetu", "--out", str(tmp_path / "out")]
    assert_refused_unchanged(
        tmp_path, args, ["did you mean 'quetu2023'", "demo", "or a study", "quetu2023-vit"], capsys
    )


def test_report_settings_leave_out_keys_the_model_does_not_read(
    finished_results,
    tmp_path,
    capsys,
) -> None:
    page = tmp_path / "report.html"
    code, _, err = run_cli(["report", str(finished_results), "-o", str(page)], capsys)
    assert code == 0, err
    html = page.read_text()
    settings = html.split("Settings shared by every run")[1].split("<h3>")[0]
    assert ">lr<" in settings and ">model<" in settings  # keys LeNet runs read
    for key in ("patch_size", "dim_head", "vit_layout", "momentum"):  # ViT's, SGD's
        assert f">{key}<" not in settings, key


def test_a_timm_model_whose_stem_shrinks_the_images_gets_a_note(tmp_path, capsys) -> None:
    out = ["--out", str(tmp_path / "out"), "--dry-run"]
    code, _, err = run_cli(
        ["run", "--preset", "tiny", "--set", "model=timm:resnet18", *out], capsys
    )
    assert code == 0, err
    assert "note: model timm:resnet18 downsamples its input 32×" in err
    assert "8-px images leave a 0×0 feature map" in err
    code, _, err = run_cli(
        ["run", "--preset", "tiny", "--set", "model=timm:vit_tiny_patch16_224", *out], capsys
    )
    assert code == 0, err
    assert "downsamples" not in err  # patch_size 4 on 8-px images: a 2×2 grid
