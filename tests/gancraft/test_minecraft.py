"""Minecraft worlds: region files and Sponge schematics the project writes itself (through nbtlib) read
back to the expected label grid; the packed block-state arrays against a plain big-integer reference;
the block-id -> label table; hollowing against a brute-force distance; training and rendering config."""

import numpy as np
import pytest
import torch

from imaginate.cli import main
from imaginate.config import ConfigError, build_config
from imaginate.data.blockworld import DEFAULT_LABELS, PinholeCamera
from imaginate.data.blockworld.minecraft import (
    BlockLabelTable,
    hollow,
    load_any_world,
    pack_indices,
    read_region_blocks,
    read_schematic_blocks,
    unpack_indices,
    write_region,
    write_schematic,
)
from imaginate.data.errors import DataError

pytest.importorskip("nbtlib", reason="the minecraft extra (make install installs it)")

ID = {label.name: label.id for label in DEFAULT_LABELS}
NAMES = np.array(["minecraft:stone", "minecraft:grass_block", "minecraft:air", "minecraft:water",
                  "minecraft:oak_log[axis=y]", "minecraft:birch_leaves[persistent=true]", "minecraft:sand",
                  "minecraft:dandelion", "minecraft:diamond_ore"], dtype=object)
LABELS = np.array([ID["stone"], ID["grass"], ID["air"], ID["water"], ID["wood"], ID["leaves"], ID["sand"], ID["air"],
                   ID["stone"]])


def random_names(shape, seed):
    choice = np.random.default_rng(seed).integers(0, len(NAMES), size=shape)
    return NAMES[choice], LABELS[choice]


def test_block_states_pack_as_minecraft_does():
    # 1.16+: entries never span two longs; 4 bits, entries 1 and 2 -> 0x21
    assert int(pack_indices(np.array([1, 2]), 4)[0]) == 0x21
    values = np.random.default_rng(0).integers(0, 32, size=4096)
    big = sum(int(v) << (5 * i) for i, v in enumerate(values))  # 1.13-1.15: one long bit string
    words = np.array([(big >> (64 * w)) & (2**64 - 1) for w in range(4096 * 5 // 64)], dtype=np.uint64).view(np.int64)
    np.testing.assert_array_equal(unpack_indices(words, 5, 4096, spanning=True), values)
    np.testing.assert_array_equal(unpack_indices(pack_indices(values, 5), 5, 4096, spanning=False), values)
    assert len(pack_indices(values, 5)) == 4096 // 12 + 1  # 12 entries of 5 bits per long, 4 bits unused


def test_a_generated_region_round_trips_to_the_label_grid(tmp_path):
    names, labels = random_names((20, 18, 23), seed=1)
    files = write_region(tmp_path / "world" / "region", names, origin=(-5, 60, 7))  # spans two region files
    assert sorted(f.name for f in files) == ["r.-1.0.mca", "r.0.0.mca"]
    grid = read_region_blocks(tmp_path / "world", (-5, 60, 7, 15, 78, 30))
    np.testing.assert_array_equal(grid, labels)
    # a crop inside it, and one reaching past the written blocks (air there)
    np.testing.assert_array_equal(read_region_blocks(tmp_path / "world", (0, 64, 10, 4, 70, 12)),
                                  labels[5:9, 4:10, 3:5])
    beyond = read_region_blocks(files[0].parent, (10, 70, 25, 20, 82, 35))
    np.testing.assert_array_equal(beyond[:5, :8, :5], labels[15:20, 10:18, 18:23])
    assert (beyond[5:] == 0).all() and (beyond[:, 8:] == 0).all()


def test_a_generated_schematic_round_trips_to_the_label_grid(tmp_path):
    names, labels = random_names((9, 7, 5), seed=2)
    write_schematic(tmp_path / "house.schem", names)
    np.testing.assert_array_equal(read_schematic_blocks(tmp_path / "house.schem"), labels)
    world = load_any_world(tmp_path / "house.schem")
    assert world.shape == (9, 7, 5) and world.labels == DEFAULT_LABELS


def test_label_table_matches_states_and_wildcards_and_reads_user_files(tmp_path):
    table = BlockLabelTable.read()
    assert table.label_of("minecraft:spruce_log[axis=x]") == ID["wood"]
    assert table.label_of("jungle_leaves") == ID["leaves"]
    assert table.label_of("minecraft:cave_air") == ID["air"]
    assert table.label_of("minecraft:some_modded_block") == ID["stone"]
    custom = tmp_path / "labels.csv"
    custom.write_text("# mine\nblock,label\nminecraft:diamond_ore,snow\n*,gravel\n")
    table = BlockLabelTable.read(custom)
    assert table.label_of("minecraft:diamond_ore") == ID["snow"] and table.label_of("minecraft:stone") == ID["gravel"]
    custom.write_text("block,label\nminecraft:stone,lava\n")
    with pytest.raises(DataError, match="labels.csv: row 2"):
        BlockLabelTable.read(custom)


def test_hollow_keeps_exactly_the_blocks_within_depth_of_air():
    g = torch.Generator().manual_seed(0)
    blocks = (torch.rand(10, 9, 11, generator=g) < 0.9).int() * 3
    out = hollow(blocks, 2)
    air = torch.nonzero(blocks == 0).float()
    for x, y, z in itertools_product(blocks.shape):
        if blocks[x, y, z] == 0:
            assert out[x, y, z] == 0
            continue
        near = bool(((air - torch.tensor([x, y, z]).float()).abs().amax(dim=1) <= 2).any()) if len(air) else False
        assert int(out[x, y, z]) == (3 if near else 0), (x, y, z)
    assert int((out != 0).sum()) < int((blocks != 0).sum())  # something was hollowed


def itertools_product(shape):
    import itertools

    return itertools.product(*(range(n) for n in shape))


def test_training_config_reads_a_minecraft_world_and_it_renders(tmp_path):
    from imaginate.registry import get_system
    from imaginate.systems.gancraft.model import GANcraftGenerator, GANcraftModelConfig
    from imaginate.systems.gancraft.system import build_world
    from imaginate.systems.gancraft.tiled import render_camera

    names = np.full((24, 12, 24), "minecraft:air", dtype=object)
    names[:, :4] = "minecraft:stone"
    names[:, 4] = "minecraft:grass_block"
    names[5:9, 5:8, 5:9] = "minecraft:oak_leaves"
    names[15:20, 4, 3:10] = "minecraft:water"
    write_region(tmp_path / "world" / "region", names, origin=(100, 50, -40))
    spec = get_system("gancraft")
    cfg = build_config(spec.config_cls, preset="tiny", system="gancraft",
                       overrides=[f"data.world_file={tmp_path / 'world'}", "data.world_box=[100,50,-40,124,62,-16]",
                                  "data.hollow=2"])
    world = build_world(cfg.data)
    assert world.shape == (24, 12, 24)
    assert int(world.blocks[10, 4, 10]) == ID["grass"] and int(world.blocks[16, 4, 5]) == ID["water"]
    assert int(world.blocks[10, 2, 10]) == 0 and int(world.blocks[10, 3, 10]) == ID["stone"]  # 3+ below air: hollow
    net = GANcraftGenerator(GANcraftModelConfig.tiny(), world).eval()
    camera = PinholeCamera.from_look_at((2.0, 10.0, 2.0), (12.0, 4.0, 12.0), 16, 16)
    frame = render_camera(net, camera, net.style_code(torch.zeros(1, net.config.style_dims)), num_samples=4)
    assert frame.shape == (3, 16, 16) and bool(torch.isfinite(frame).all())


def test_minecraft_world_mistakes_are_one_line_errors(tmp_path, capsys):
    from imaginate.registry import get_system

    with pytest.raises(ConfigError, match="data.world_box"):
        build_config(get_system("gancraft").config_cls, preset="tiny", system="gancraft",
                     overrides=["data.world_box=[0,0,0,1,1]"])
    names, _ = random_names((4, 4, 4), seed=3)
    write_region(tmp_path / "w", names)
    with pytest.raises(DataError, match="crop box"):
        load_any_world(tmp_path / "w")
    broken = tmp_path / "b" / "r.0.0.mca"
    broken.parent.mkdir()
    broken.write_bytes(b"\0" * 100)
    code = main(["train", "gancraft", "--out", str(tmp_path / "run"), f"data.world_file={broken.parent}",
                 "data.world_box=[0,0,0,4,4,4]", "train.device=cpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "r.0.0.mca" in err and "8 KiB header" in err
