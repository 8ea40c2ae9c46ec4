"""kill -9 at random steps, then ``--resume``: the final weights are bit-identical to an uninterrupted run.

Each system runs as a chain: a child process is SIGKILLed at a random step and phase (killing.PHASES), the
next child resumes the same run folder and is killed later, and so on; after some kills the newest
checkpoint is also damaged (truncated, zeroed or bit-flipped), so the resume must fall back to the one
before. The last child finishes the run. classify (1 network, Madam), gan (G, D, EMA; 2 optimizers) and
wsod (detector + Concrete DropBlock; 2 optimizers, schedulers): 8 + 8 + 4 = 20 kills. Each child starts by
fork (no re-import), so the chain costs about what its training steps cost (~5 CPU-min in all): slow.
"""

from __future__ import annotations

import random
import re

import pytest
import torch
from killing import PHASES, SYSTEMS, run_child
from safetensors.torch import load_file

from imaginate.engine.checkpoint import list_checkpoints

DAMAGE = ("truncated", "zeroed", "bitflip")


def _damage(path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "truncated":
        path.write_bytes(bytes(data[: len(data) // 3]))
    elif how == "zeroed":
        path.write_bytes(bytes(len(data)))
    else:  # flip bytes in the zip's central directory, which torch.load must read
        for i in range(len(data) - 200, len(data) - 20, 7):
            data[i] ^= 0xFF
        path.write_bytes(bytes(data))


@pytest.mark.slow
@pytest.mark.parametrize("system,kills", [("classify", 8), ("gan", 8), ("wsod", 4)])
def test_kill9_at_random_steps_then_resume_is_bit_identical(system, kills, tmp_path, record_property):
    total = int(re.search(r"train\.steps=(\d+)", " ".join(SYSTEMS[system])).group(1))
    assert run_child(system, tmp_path / "reference", resume=False) == 0
    rng = random.Random(f"kill9-{system}")
    points = sorted(rng.sample(range(2, total + 1), kills))
    run, faults, log, damaged = tmp_path / "killed", 0, [], set()
    for step in points:
        phase = rng.choice(PHASES)
        resume = bool(list_checkpoints(run))
        assert run_child(system, run, resume=resume, kill_step=step, phase=phase) == -9, (step, phase)
        faults += 1
        log.append(f"{step}:{phase}")
        found = list_checkpoints(run)
        fresh = found and found[-1][1].read_bytes() not in damaged  # not one this test already broke
        if len(found) >= 2 and fresh and rng.random() < 0.35:  # also break the newest checkpoint
            how = rng.choice(DAMAGE)
            _damage(found[-1][1], how)
            damaged.add(found[-1][1].read_bytes())
            faults += 1
            log.append(f"damaged step {found[-1][0]} ({how})")
    assert run_child(system, run, resume=bool(list_checkpoints(run))) == 0
    reference, resumed = load_file(str(tmp_path / "reference" / "final.safetensors")), load_file(
        str(run / "final.safetensors"))
    assert reference.keys() == resumed.keys()
    different = [k for k in reference if not torch.equal(reference[k], resumed[k])]
    record_property("category", "fault_kill9")
    record_property("faults", faults)
    record_property("kills", kills)
    record_property("tensors", len(reference))
    record_property("schedule", "; ".join(log))
    assert not different, f"{len(different)} of {len(reference)} tensors differ after {log}: {different[:3]}"
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]  # partial writes cleaned
