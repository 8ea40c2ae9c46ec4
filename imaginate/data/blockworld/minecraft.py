"""Minecraft worlds as block worlds: Java Edition region files and Sponge schematics, reduced to labels.

Reading goes through ``nbtlib`` (the NBT format; the ``minecraft`` extra: ``pip install 'imaginate[minecraft]'``;
the reference's own converter, ``sch2vox``, uses it too); the region container (a 4 KiB chunk table, then
zlib/gzip-compressed chunk NBT) and the packed block-state arrays are decoded here.

- ``read_region_blocks(path, box)``: the block names inside a crop box ``(x0, y0, z0, x1, y1, z1)``
  (Minecraft world coordinates, half-open) of a world folder, its ``region/`` folder or one ``.mca``
  file. Chunks of 1.18+ (``sections[].block_states``) and 1.13-1.17 (``Level.Sections[].Palette /
  BlockStates``; 1.13-1.15's bit packing that spans longs, 1.16+'s that does not) are read; missing
  chunks are air.
- ``read_schematic_blocks(path)``: a Sponge schematic (``.schem``, versions 2 and 3).
- ``BlockLabelTable``: a CSV of ``block,label`` rows (``*`` wildcards, first match wins;
  ``minecraft_labels.csv`` is the default) that maps Minecraft block ids to the block-world labels.
- ``hollow(blocks, depth)``: air in place of solid blocks farther than ``depth`` blocks (chessboard
  distance) from any air block, as the reference's preprocessing erodes world interiors (outside the
  grid counts as solid, so the world's floor and sides are hollowed too).
- ``load_minecraft_world`` / ``load_any_world``: the above as a ``BlockWorld``; ``load_any_world`` also
  reads ``.npy`` grids (``world.load_world``) and is what ``data.world_file`` and ``imaginate render
  --world`` use.
- ``write_region`` / ``write_schematic``: minimal writers of the same formats (1.18+ chunks, Sponge v2),
  used by the tests to make small worlds with the library.

Every malformed input is a one-line ``DataError`` naming the file.
"""

from __future__ import annotations

import csv
import fnmatch
import gzip
import io
import math
import os
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from imaginate.data.blockworld.world import AIR, DEFAULT_LABELS, BlockWorld, load_world
from imaginate.data.errors import DataError

LABELS_CSV = Path(__file__).with_name("minecraft_labels.csv")
MINECRAFT_SUFFIXES = (".mca", ".schem")
SECTION = 16
SPANNING_BEFORE = 2566  # DataVersion of 1.16: from here entries do not span two longs


def _nbtlib():
    try:
        import nbtlib
    except ImportError:
        raise DataError("reading Minecraft worlds needs nbtlib: pip install 'imaginate[minecraft]' "
                        "(or pip install nbtlib)") from None
    return nbtlib


def _base_name(state: str) -> str:
    """``"minecraft:oak_log[axis=y]"`` -> ``"minecraft:oak_log"`` (a bare name gets the namespace)."""
    name = state.split("[", 1)[0].strip()
    return name if ":" in name else f"minecraft:{name}"


# --------------------------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------------------------


@dataclass
class BlockLabelTable:
    """Minecraft block ids -> label ids of ``DEFAULT_LABELS``, from ``(pattern, label name)`` rows."""

    rows: list[tuple[str, str]]

    @classmethod
    def read(cls, path: str | os.PathLike | None = None) -> BlockLabelTable:
        """The table of a CSV file (``block,label`` header; ``#`` comment lines); default ``LABELS_CSV``."""
        path = Path(path) if path else LABELS_CSV
        names = {label.name for label in DEFAULT_LABELS}
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as error:
            raise DataError(f"block label table {path}: cannot be read ({type(error).__name__})") from None
        lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
        reader = csv.reader(lines)
        header = next(reader, None)
        if header is None or [h.strip() for h in header] != ["block", "label"]:
            raise DataError(f"block label table {path}: the first row must be the header 'block,label'")
        rows = []
        for number, row in enumerate(reader, start=2):
            if len(row) != 2 or row[1].strip() not in names:
                raise DataError(f"block label table {path}: row {number} {row!r} must be 'block,label' with label "
                                f"one of {', '.join(sorted(names))}")
            rows.append((row[0].strip(), row[1].strip()))
        return cls(rows)

    def label_of(self, block: str) -> int:
        """The label id of a block name or state (a name no row matches is stone)."""
        name = _base_name(block)
        ids = {label.name: label.id for label in DEFAULT_LABELS}
        for pattern, label in self.rows:
            if fnmatch.fnmatchcase(name, pattern):
                return ids[label]
        return ids["stone"]

    def map(self, palette: Sequence[str], indices: np.ndarray) -> np.ndarray:
        """Palette indices -> label ids (int32, same shape)."""
        lut = np.array([self.label_of(name) for name in palette] or [AIR], dtype=np.int32)
        return lut[indices]


def hollow(blocks: torch.Tensor, depth: int = 2) -> torch.Tensor:
    """``blocks [X, Y, Z]`` with every solid block farther than ``depth`` blocks (chessboard distance) from
    an air block replaced by air; the outside of the grid counts as solid."""
    if depth < 1:
        return blocks
    air = (blocks == AIR).float()[None, None]  # [1, 1, X, Y, Z]
    size = 2 * depth + 1
    near_air = F.max_pool3d(air, size, stride=1, padding=depth)[0, 0] > 0  # padding is -inf: not air
    return torch.where(near_air, blocks, torch.zeros_like(blocks))


# --------------------------------------------------------------------------------------------
# Region files
# --------------------------------------------------------------------------------------------


def unpack_indices(data: np.ndarray, bits: int, count: int, spanning: bool) -> np.ndarray:
    """``count`` unsigned ``bits``-wide integers packed little-end-first into 64-bit longs ``data``.

    Minecraft 1.16+ (``spanning=False``) fits ``64 // bits`` entries per long and leaves the top bits
    unused; 1.13-1.15 (``spanning=True``) runs entries across long boundaries.
    """
    words = np.asarray(data, dtype=np.int64).view(np.uint64).astype(np.uint64)
    mask = np.uint64((1 << bits) - 1)
    if not spanning:
        per_long = 64 // bits
        shifts = (np.arange(per_long, dtype=np.uint64) * np.uint64(bits))
        values = (words[:, None] >> shifts[None, :]) & mask  # [L, per_long]
        values = values.reshape(-1)
    else:
        start = np.arange(count, dtype=np.int64) * bits
        word, offset = start // 64, (start % 64).astype(np.uint64)
        low = words[np.minimum(word, len(words) - 1)] >> offset
        high_word = np.minimum(word + 1, len(words) - 1)
        spill = (offset + np.uint64(bits)) > np.uint64(64)
        shift_up = np.where(spill, np.uint64(64) - offset, np.uint64(0))
        high = np.where(spill, words[high_word] << shift_up, np.uint64(0))
        values = (low | high) & mask
    if values.size < count:
        raise ValueError(f"{len(words)} longs hold fewer than {count} entries of {bits} bits")
    return values[:count].astype(np.int64)


def pack_indices(values: np.ndarray, bits: int) -> np.ndarray:
    """The inverse of ``unpack_indices(spanning=False)``: int64 longs."""
    per_long = 64 // bits
    padded = np.zeros(math.ceil(len(values) / per_long) * per_long, dtype=np.uint64)
    padded[:len(values)] = values
    shifts = np.arange(per_long, dtype=np.uint64) * np.uint64(bits)
    words = np.bitwise_or.reduce(padded.reshape(-1, per_long) << shifts[None, :], axis=1)
    return words.view(np.int64)


def _sections(chunk) -> tuple[list, int]:
    """``(sections, data_version)`` of a chunk's NBT root; each section ``(y, palette names, longs or None)``."""
    version = int(chunk.get("DataVersion", 0))
    out = []
    if "sections" in chunk:  # 1.18+
        for section in chunk["sections"]:
            states = section.get("block_states")
            if states is None or "palette" not in states:
                continue
            out.append((int(section["Y"]), [str(p["Name"]) for p in states["palette"]], states.get("data")))
    elif "Level" in chunk:  # 1.13-1.17
        for section in chunk["Level"].get("Sections", []):
            if "Palette" not in section:
                continue
            out.append((int(section["Y"]), [str(p["Name"]) for p in section["Palette"]], section.get("BlockStates")))
    return out, version


def _read_chunk(data: bytes, index: int, path: Path):
    nbtlib = _nbtlib()
    entry = data[4 * index:4 * index + 4]
    offset, sectors = int.from_bytes(entry[:3], "big"), entry[3]
    if offset == 0 or sectors == 0:
        return None
    start = offset * 4096
    if start + 5 > len(data):
        raise DataError(f"region file {path}: chunk {index} lies past the end of the file (truncated?)")
    length, kind = struct.unpack(">iB", data[start:start + 5])
    payload = data[start + 5:start + 4 + length]
    try:
        raw = {1: gzip.decompress, 2: zlib.decompress, 3: bytes}[kind](payload)
        return nbtlib.File.parse(io.BytesIO(raw))
    except KeyError:
        raise DataError(f"region file {path}: chunk {index} has unknown compression {kind}") from None
    except Exception as error:  # zlib.error, EOFError, nbtlib's own errors: all mean a damaged chunk
        raise DataError(f"region file {path}: chunk {index} is not readable NBT ({type(error).__name__})") from None


def _region_files(path: Path) -> dict[tuple[int, int], Path]:
    if path.is_file():
        parts = path.name.split(".")
        if len(parts) != 4 or parts[0] != "r" or parts[3] != "mca":
            raise DataError(f"region file {path}: the name must be r.<x>.<z>.mca")
        try:
            return {(int(parts[1]), int(parts[2])): path}
        except ValueError:
            raise DataError(f"region file {path}: the name must be r.<x>.<z>.mca") from None
    folder = path / "region" if (path / "region").is_dir() else path
    files = {}
    for file in folder.glob("r.*.*.mca"):
        parts = file.name.split(".")
        try:
            files[(int(parts[1]), int(parts[2]))] = file
        except ValueError:
            continue
    if not files:
        raise DataError(f"world {path}: no region files (r.<x>.<z>.mca) found")
    return files


def _check_box(box: Sequence[int], where: str) -> tuple[int, ...]:
    if len(box) != 6 or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in box):
        raise DataError(f"{where}: the crop box must be 6 integers [x0, y0, z0, x1, y1, z1], got {list(box)}")
    x0, y0, z0, x1, y1, z1 = (int(v) for v in box)
    if not (x1 > x0 and y1 > y0 and z1 > z0):
        raise DataError(f"{where}: the crop box must have x1 > x0, y1 > y0, z1 > z0, got {list(box)}")
    if (x1 - x0) * (y1 - y0) * (z1 - z0) > 2**31:
        raise DataError(f"{where}: the crop box holds more than 2^31 blocks, got {list(box)}")
    return x0, y0, z0, x1, y1, z1


def read_region_blocks(path: str | os.PathLike, box: Sequence[int],
                       table: BlockLabelTable | None = None) -> np.ndarray:
    """``[X, Y, Z]`` int32 label ids of the blocks in ``box`` of a Java world (folder or one ``.mca``)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"world {path} does not exist")
    x0, y0, z0, x1, y1, z1 = _check_box(box, f"world {path}")
    table = table or BlockLabelTable.read()
    files = _region_files(path)
    out = np.zeros((x1 - x0, y1 - y0, z1 - z0), dtype=np.int32)
    for cx in range(x0 // SECTION, (x1 - 1) // SECTION + 1):
        for cz in range(z0 // SECTION, (z1 - 1) // SECTION + 1):
            file = files.get((cx // 32, cz // 32))
            if file is None:
                continue
            data = _read_file(file)
            chunk = _read_chunk(data, (cx % 32) + 32 * (cz % 32), file)
            if chunk is None:
                continue
            sections, version = _sections(chunk)
            for sy, palette, longs in sections:
                if not (sy * SECTION < y1 and (sy + 1) * SECTION > y0):
                    continue
                if longs is None or len(palette) == 1:
                    indices = np.zeros(SECTION**3, dtype=np.int64)
                else:
                    bits = max(4, (len(palette) - 1).bit_length())
                    try:
                        indices = unpack_indices(np.asarray(longs), bits, SECTION**3, version < SPANNING_BEFORE)
                    except ValueError as error:
                        raise DataError(f"region file {file}: chunk ({cx}, {cz}) section {sy}: {error}") from None
                if int(indices.max()) >= len(palette):
                    raise DataError(f"region file {file}: chunk ({cx}, {cz}) section {sy} indexes past its palette")
                labels = table.map(palette, indices).reshape(SECTION, SECTION, SECTION).transpose(2, 0, 1)  # [x,y,z]
                bx, by, bz = cx * SECTION, sy * SECTION, cz * SECTION
                sx = slice(max(x0, bx), min(x1, bx + SECTION))
                sy_ = slice(max(y0, by), min(y1, by + SECTION))
                sz = slice(max(z0, bz), min(z1, bz + SECTION))
                out[sx.start - x0:sx.stop - x0, sy_.start - y0:sy_.stop - y0, sz.start - z0:sz.stop - z0] = \
                    labels[sx.start - bx:sx.stop - bx, sy_.start - by:sy_.stop - by, sz.start - bz:sz.stop - bz]
    return out


_FILE_CACHE: dict[Path, bytes] = {}


def _read_file(file: Path) -> bytes:
    if file not in _FILE_CACHE:
        _FILE_CACHE.clear()  # keep one region file (up to ~10 MB) in memory at a time
        try:
            _FILE_CACHE[file] = file.read_bytes()
        except OSError as error:
            raise DataError(f"region file {file}: cannot be read ({type(error).__name__})") from None
    data = _FILE_CACHE[file]
    if len(data) < 8192:
        raise DataError(f"region file {file}: shorter than its 8 KiB header ({len(data)} bytes)")
    return data


# --------------------------------------------------------------------------------------------
# Schematics
# --------------------------------------------------------------------------------------------


def _varints(data: bytes, count: int, path: Path) -> np.ndarray:
    out = np.empty(count, dtype=np.int64)
    value = shift = i = 0
    for byte in data:
        value |= (byte & 0x7F) << shift
        if byte & 0x80:
            shift += 7
            continue
        if i >= count:
            break
        out[i], i, value, shift = value, i + 1, 0, 0
    if i != count:
        raise DataError(f"schematic {path}: block data holds {i} entries, the size needs {count}")
    return out


def read_schematic_blocks(path: str | os.PathLike, table: BlockLabelTable | None = None) -> np.ndarray:
    """``[X, Y, Z]`` int32 label ids of a Sponge schematic (``.schem`` v2 or v3)."""
    nbtlib = _nbtlib()
    path = Path(path)
    if not path.is_file():
        raise DataError(f"schematic {path} does not exist")
    try:
        root = nbtlib.load(path)
    except Exception as error:  # gzip / NBT parse errors of a damaged or foreign file
        raise DataError(f"schematic {path}: not a readable NBT file ({type(error).__name__})") from None
    root = root.get("Schematic", root)
    table = table or BlockLabelTable.read()
    try:
        width, height, length = (int(root[k]) for k in ("Width", "Height", "Length"))
        if "Blocks" in root and "Palette" in root.get("Blocks", {}):  # v3
            palette_map, data = root["Blocks"]["Palette"], root["Blocks"]["Data"]
        elif "Palette" in root and "BlockData" in root:  # v2
            palette_map, data = root["Palette"], root["BlockData"]
        else:
            raise DataError(f"schematic {path}: no Sponge palette (legacy MCEdit .schematic files with numeric ids "
                            "are not supported; re-save as .schem)")
    except (KeyError, TypeError, ValueError):
        raise DataError(f"schematic {path}: missing Width / Height / Length or block data") from None
    if min(width, height, length) < 1:
        raise DataError(f"schematic {path}: size {width}x{height}x{length} is empty")
    palette = [""] * (max((int(v) for v in palette_map.values()), default=-1) + 1)
    for name, index in palette_map.items():
        palette[int(index)] = str(name)
    indices = _varints(bytes(np.asarray(data, dtype=np.int8).view(np.uint8)), width * height * length, path)
    if indices.size and int(indices.max()) >= len(palette):
        raise DataError(f"schematic {path}: block data indexes past its palette")
    labels = table.map(palette, indices)
    return labels.reshape(height, length, width).transpose(2, 0, 1)  # (y, z, x) -> [X, Y, Z]


# --------------------------------------------------------------------------------------------
# Worlds
# --------------------------------------------------------------------------------------------


def is_minecraft_path(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a region file, a schematic or a folder (a Java world or its region folder)."""
    path = Path(path)
    return path.suffix in MINECRAFT_SUFFIXES or path.is_dir()


def load_minecraft_world(path: str | os.PathLike, box: Sequence[int] | None = None,
                         labels_csv: str | os.PathLike | None = None, hollow_depth: int = 0) -> BlockWorld:
    """A ``BlockWorld`` (``DEFAULT_LABELS``) of a schematic, or of ``box`` in a Java world / region file."""
    table = BlockLabelTable.read(labels_csv)
    path = Path(path)
    if path.suffix == ".schem":
        blocks = read_schematic_blocks(path, table)
    else:
        if box is None or len(box) == 0:
            raise DataError(f"world {path}: a Minecraft world needs a crop box [x0, y0, z0, x1, y1, z1] "
                            "(data.world_box / --box)")
        blocks = read_region_blocks(path, box, table)
    grid = torch.from_numpy(np.ascontiguousarray(blocks))
    if not bool((grid != AIR).any()):
        raise DataError(f"world {path}: the blocks read are all air (check the crop box)")
    return BlockWorld(hollow(grid, hollow_depth), DEFAULT_LABELS)


def load_any_world(path: str | os.PathLike, layout: str = "xyz", box: Sequence[int] | None = None,
                   labels_csv: str | os.PathLike | None = None, hollow_depth: int = 0) -> BlockWorld:
    """A ``.npy`` grid (``load_world`` with ``layout``) or a Minecraft world (``load_minecraft_world``);
    ``hollow_depth`` > 0 hollows either."""
    if is_minecraft_path(path):
        return load_minecraft_world(path, box, labels_csv, hollow_depth)
    world = load_world(path, layout=layout)
    return BlockWorld(hollow(world.blocks, hollow_depth), world.labels) if hollow_depth > 0 else world


# --------------------------------------------------------------------------------------------
# Writers (1.18+ chunks, Sponge v2): small test worlds
# --------------------------------------------------------------------------------------------


def write_region(folder: str | os.PathLike, names: np.ndarray, origin: Sequence[int] = (0, 0, 0),
                 data_version: int = 3465) -> list[Path]:
    """Write block names ``[X, Y, Z]`` (strings) placed at ``origin`` as 1.18+ region files in ``folder``;
    the returned files cover every chunk the blocks touch (blocks outside them are air)."""
    nbtlib = _nbtlib()
    from nbtlib import Compound, Int, List, LongArray, String

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ox, oy, oz = (int(v) for v in origin)
    sx, sy, sz = names.shape
    regions: dict[tuple[int, int], dict[int, bytes]] = {}
    for cx in range(ox // SECTION, (ox + sx - 1) // SECTION + 1):
        for cz in range(oz // SECTION, (oz + sz - 1) // SECTION + 1):
            sections = []
            for cy in range(oy // SECTION, (oy + sy - 1) // SECTION + 1):
                cube = np.full((SECTION, SECTION, SECTION), "minecraft:air", dtype=object)  # [x, y, z]
                bx, by, bz = cx * SECTION - ox, cy * SECTION - oy, cz * SECTION - oz
                xs, ys, zs = (slice(max(0, b), min(n, b + SECTION)) for b, n in ((bx, sx), (by, sy), (bz, sz)))
                cube[xs.start - bx:xs.stop - bx, ys.start - by:ys.stop - by, zs.start - bz:zs.stop - bz] = names[xs, ys, zs]
                palette, indices = np.unique(cube.transpose(1, 2, 0).reshape(-1).astype(str), return_inverse=True)
                states = Compound({"palette": List[Compound]([Compound({"Name": String(p)}) for p in palette])})
                if len(palette) > 1:
                    states["data"] = LongArray(pack_indices(indices, max(4, (len(palette) - 1).bit_length())))
                sections.append(Compound({"Y": nbtlib.Byte(cy), "block_states": states}))
            chunk = nbtlib.File({"DataVersion": Int(data_version), "xPos": Int(cx), "zPos": Int(cz),
                                 "yPos": Int(oy // SECTION), "sections": List[Compound](sections)})
            buffer = io.BytesIO()
            chunk.write(buffer)
            regions.setdefault((cx // 32, cz // 32), {})[(cx % 32) + 32 * (cz % 32)] = zlib.compress(buffer.getvalue())
    written = []
    for (rx, rz), chunks in regions.items():
        header, body, sector = bytearray(8192), bytearray(), 2
        for index, payload in sorted(chunks.items()):
            record = struct.pack(">iB", len(payload) + 1, 2) + payload
            record += b"\0" * (-len(record) % 4096)
            header[4 * index:4 * index + 4] = sector.to_bytes(3, "big") + bytes([len(record) // 4096])
            body += record
            sector += len(record) // 4096
        file = folder / f"r.{rx}.{rz}.mca"
        file.write_bytes(bytes(header) + bytes(body))
        written.append(file)
    return written


def write_schematic(path: str | os.PathLike, names: np.ndarray) -> None:
    """Write block names ``[X, Y, Z]`` as a Sponge v2 schematic (gzipped NBT)."""
    nbtlib = _nbtlib()
    from nbtlib import ByteArray, Compound, Int, Short

    sx, sy, sz = names.shape
    palette, indices = np.unique(names.transpose(1, 2, 0).reshape(-1).astype(str), return_inverse=True)  # (y, z, x)
    data = bytearray()
    for value in indices.tolist():
        while True:
            byte = value & 0x7F
            value >>= 7
            data.append(byte | (0x80 if value else 0))
            if not value:
                break
    root = nbtlib.File({"Version": Int(2), "DataVersion": Int(3465), "Width": Short(sx), "Height": Short(sy),
                        "Length": Short(sz), "Palette": Compound({p: Int(i) for i, p in enumerate(palette)}),
                        "BlockData": ByteArray(np.frombuffer(bytes(data), dtype=np.int8))}, root_name="Schematic")
    root.save(path, gzipped=True)
