"""``imaginate`` / ``python -m imaginate``: list, train, eval, demo, zoo, energy, translate, render, ...

Mistakes in what the user typed (config keys, presets, paths, data) exit with status 2 and one line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

EXIT_USAGE = 2


class UserError(Exception):
    """Anything the user can fix: printed as one line, exit status 2."""


def _cmd_list(args: argparse.Namespace) -> int:
    from imaginate.registry import list_systems

    for spec in list_systems():
        presets = ", ".join(spec.presets) or "-"
        print(f"{spec.name:<14} presets: {presets:<28} {spec.summary}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from imaginate.config import build_config, load_saved_config
    from imaginate.engine import run_training
    from imaginate.registry import get_system

    spec = get_system(args.system)
    out = Path(args.out) if args.out else Path("runs") / f"{args.system}-{args.preset}"
    if args.resume and (out / "config.yaml").is_file():
        # Continue with the run's own config; overrides (e.g. train.steps=N to extend) still apply.
        saved = load_saved_config(spec.config_cls, out / "config.yaml")
        cfg = build_config(spec.config_cls, preset=None, system=spec.name, overrides=args.overrides, base=saved)
    else:
        cfg = build_config(spec.config_cls, preset=args.preset, system=spec.name, overrides=args.overrides)
    metrics = run_training(spec, cfg, out, resume=args.resume, preset=args.preset,
                           progress=not args.no_progress)
    if os.environ.get("RANK", "0") == "0":
        print(json.dumps({"run_dir": str(out), **{k: round(v, 6) for k, v in metrics.items()}}))
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from imaginate.engine import evaluate_run

    metrics = evaluate_run(Path(args.run_dir), device=args.device)
    print(json.dumps({k: round(v, 6) for k, v in metrics.items()}))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from imaginate.registry import get_system, list_systems
    from imaginate.report import write_report

    specs = [get_system(args.only)] if args.only else list_systems()
    specs = [s for s in specs if s.demo is not None]
    out = Path(args.out)
    parts = []
    start = time.time()
    for spec in specs:
        print(f"== demo: {spec.name}", flush=True)
        t0 = time.time()
        part = spec.demo(out, train=args.train)
        part.seconds = time.time() - t0  # the whole part, loading and pictures included
        parts.append(part)
        print(f"== demo: {spec.name} took {part.seconds:.0f} s", flush=True)
    path = write_report(parts, out, total_seconds=time.time() - start, trained=args.train)
    print(f"report: {path.resolve()}  ({time.time() - start:.0f} s)")
    return 0


def _cmd_zoo(args: argparse.Namespace) -> int:
    from imaginate import zoo

    if args.zoo_command == "list":
        print(f"{'name':<28} {'system':<13} {'steps':>6} {'wall':>7} {'MB':>5}  summary")
        for e in zoo.list_entries():
            wall = "-" if not e.wall_seconds else (f"{e.wall_seconds / 60:.0f} min" if e.wall_seconds >= 120
                                                    else f"{e.wall_seconds:.0f} s")
            size = f"{e.bytes / 2**20:.1f}" if e.bytes else "-"
            state = "" if e.trained else "(not trained yet) "
            print(f"{'zoo:' + e.name:<28} {e.system:<13} {e.steps or '-':>6} {wall:>7} {size:>5}  {state}{e.summary}")
        return 0
    entry = zoo.get_entry(args.name)
    if args.zoo_command == "verify":
        path = zoo.verify(entry)
        if zoo.file_shapes(path) != entry.shapes:
            raise zoo.ZooError(f"{path}: tensor names or shapes differ from the registry")
        print(f"zoo:{entry.name}: {path} ok (sha256 {entry.sha256[:12]}, {len(entry.shapes)} tensors)")
        return 0
    shown = {k: v for k, v in entry.to_json().items() if k not in ("shapes", "config")}
    print(json.dumps({**shown, "command": entry.command, "weights": str(entry.weights_path)}, indent=1))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imaginate", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="systems and their presets, one line each")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("train", help="train a system (also under torchrun --nproc_per_node N -m imaginate train)",
                       description="Train SYSTEM from a preset plus key=value overrides, e.g. "
                                   "`imaginate train classify --preset tiny optim.lr=0.02 train.steps=1000`.")
    p.add_argument("system", help="a system name (see `imaginate list`)")
    p.add_argument("--preset", default="tiny", help="a YAML preset in configs/SYSTEM/ (default: tiny)")
    p.add_argument("--out", default=None, help="run folder (default: runs/SYSTEM-PRESET)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides (OmegaConf dot keys)")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("eval", help="evaluate a run's newest checkpoint", description="Evaluate RUN_DIR.")
    p.add_argument("run_dir")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("demo", help="each system's quick demo, then one report.html",
                       description="Run every system's quick demo (or one) and write OUT/report.html.")
    p.add_argument("--out", default="runs/demo", help="folder for runs and report.html (default: runs/demo)")
    p.add_argument("--only", default=None, metavar="SYSTEM", help="run one system's demo")
    p.add_argument("--train", action="store_true",
                   help="train every part from scratch (slow) instead of using the project-trained zoo weights")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("zoo", help="project-trained weights: list, show NAME, verify NAME",
                       description="The model zoo. Every verb that takes a run folder also takes zoo:NAME.")
    zoo_sub = p.add_subparsers(dest="zoo_command", required=True, metavar="ZOO_COMMAND")
    zoo_sub.add_parser("list", help="one line per entry")
    for verb, text in (("show", "an entry's record (command, steps, time, sha256, metrics)"),
                       ("verify", "check an entry's weights file against its sha256 and shapes")):
        q = zoo_sub.add_parser(verb, help=text)
        q.add_argument("name", help="an entry name, with or without zoo:")
    p.set_defaults(func=_cmd_zoo)

    from imaginate.numerics.energy import add_energy_parser

    add_energy_parser(sub)  # imaginate energy --model resnet18|resnet50|bert-base|bert-large

    from imaginate.systems.coco_funit.translate import add_translate_parser

    add_translate_parser(sub)  # imaginate translate --checkpoint RUN --content IMG --style IMG ...

    from imaginate.systems.gancraft.render import add_render_parser

    add_render_parser(sub)  # imaginate render --checkpoint RUN [--world W.npy] --path orbit|fly --out V.mp4

    from imaginate.systems.styled_text.write import add_write_parser

    add_write_parser(sub)  # imaginate write --checkpoint RUN --context "..." --style-example FILE

    from imaginate.systems.vid2vid.synthesize import add_synthesize_parser

    add_synthesize_parser(sub)  # imaginate synthesize --checkpoint RUN --world W.npy --path revisit --out V.mp4

    from imaginate.systems.face_vid2vid.talk import add_talk_parser

    add_talk_parser(sub)  # imaginate talk --checkpoint RUN --source IMG --driving V.mp4 --out OUT.mp4 [--yaw D]

    from imaginate.systems.face_vid2vid.codec_cli import add_codec_parser

    add_codec_parser(sub)  # imaginate codec encode --checkpoint RUN --video IN.mp4 --out S.fv2v | decode | info

    from imaginate.serve.app import add_serve_parser

    add_serve_parser(sub)  # imaginate serve [--runs DIR] [--host 127.0.0.1] [--port 7860]
    return parser


def main(argv: list[str] | None = None) -> int:
    from imaginate.config import ConfigError
    from imaginate.data import DataError
    from imaginate.engine import CheckpointError, TrainingDiverged

    parser = build_parser()
    # Overrides may come before or after options (argparse stops a '*' positional at the first option).
    args, extra = parser.parse_known_args(argv)
    if extra:
        if args.command != "train" or any(e.startswith("-") for e in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = list(args.overrides) + extra
    try:
        return args.func(args)
    except (ConfigError, DataError, CheckpointError, UserError) as exc:
        print(f"imaginate: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except TrainingDiverged as exc:
        print(f"imaginate: training diverged: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("imaginate: interrupted (resume with --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
