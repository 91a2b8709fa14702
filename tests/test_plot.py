"""`portneuron plot` (issue 20): a run's raster and report traces as a PNG of 1200 x 720."""

from __future__ import annotations

import struct

import pytest

pytest.importorskip("matplotlib")

from portneuron import cli  # noqa: E402


def png_size(path) -> tuple[int, int]:
    """A PNG's width and height, from its header (IHDR)."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


def test_plot_draws_the_raster_and_traces(tmp_path, capsys):
    run = ["run", "--nring", "2", "-e", "30", "-o", str(tmp_path)]
    assert cli.main([*run, "--report", "soma@0.1"]) == 0
    assert cli.main(["plot", str(tmp_path), "--cells", "0", "8"]) == 0
    png = tmp_path / "plot.png"
    assert capsys.readouterr().out.strip().endswith(str(png))
    assert png_size(png) == (1200, 720) and png.stat().st_size > 20_000
    assert not list(tmp_path.glob("*.part"))
    # without a report: the raster alone, from out.dat
    (tmp_path / "soma.h5").unlink()
    assert cli.main(["plot", str(tmp_path / "out.dat"), "-o", str(tmp_path / "raster.png")]) == 0
    assert png_size(tmp_path / "raster.png") == (1200, 720)


@pytest.mark.parametrize(
    "content, argv, says",
    [
        ("2.5\t3\nspikes!\n", [], r"out.dat:2: 'spikes!' is not 'time<TAB>gid'"),
        ("2.5\t3\n", ["--report", "nowhere.h5"], r"nowhere.h5: no such report"),
    ],
)
def test_plot_refuses_bad_input_in_one_line(tmp_path, capsys, content, argv, says):
    import re

    (tmp_path / "out.dat").write_text(content)
    argv = [a if not a.endswith(".h5") else str(tmp_path / a) for a in argv]
    assert cli.main(["plot", str(tmp_path), *argv]) == 1
    err = capsys.readouterr().err.strip()
    assert re.search(says, err) and len(err.splitlines()) == 1, err
    assert not (tmp_path / "plot.png").exists()


def test_plot_names_a_cell_the_report_lacks(tmp_path, capsys):
    assert (
        cli.main(["run", "--nring", "1", "-e", "5", "-o", str(tmp_path), "--report", "soma"]) == 0
    )
    assert cli.main(["plot", str(tmp_path), "--cells", "99"]) == 1
    assert "soma.h5: no cell 99 in the report" in capsys.readouterr().err
