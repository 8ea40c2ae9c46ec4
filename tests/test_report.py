import base64

import torch

from imaginate.engine.images import captioned_grid, make_grid, save_png
from imaginate.report import ReportPart, Table, write_report


def test_report_embeds_tables_and_pictures(tmp_path):
    png = tmp_path / "pic.png"
    save_png(make_grid(torch.rand(4, 1, 8, 8)), png)
    part = ReportPart("classify", "Title <&>", "text", [Table("acc", ["a", "b"], [["1", "<2>"]])],
                      [("a picture", png)])
    html = write_report([part], tmp_path / "out").read_text()
    assert "<table>" in html and "&lt;2&gt;" in html and "Title &lt;&amp;&gt;" in html
    assert base64.b64encode(png.read_bytes()).decode() in html  # self-contained: the PNG is inside


def test_grids_have_the_expected_geometry():
    grid = make_grid(torch.zeros(5, 3, 4, 6), nrow=3, pad=2)
    assert grid.shape == (3, 2 * (4 + 2) + 2, 3 * (6 + 2) + 2)
    assert grid[:, 2:6, 2:8].abs().sum() == 0 and grid[:, 0, :].min() == 1  # image, then padding
    cap = captioned_grid(torch.ones(3, 1, 8, 8), ["a", "b", "c"], nrow=2, tile=16)
    assert cap.shape[0] == 3 and 0 <= cap.min() and cap.max() <= 1
