"""The ``panet`` command line: models | convert | eval | train | restore | export."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


class CliError(Exception):
    """A problem with the user's input: printed as one line, exit status 2."""


def _cmd_models(args: argparse.Namespace) -> None:
    from panet.nn.model import count_parameters
    from panet.zoo.registry import get_preset, list_models

    rows: list[tuple[str, ...]] = []
    for name in list_models(args.pattern, task=args.task):
        preset = get_preset(name)
        cfg = preset.config
        rows.append(
            (
                name,
                preset.task,
                f"x{cfg['scale']}" if cfg["scale"] > 1 else "",
                str(cfg["blocks"]),
                str(cfg["features"]),
                "paper" if preset.paper else "small",
                preset.description,
            )
        )
    if args.params:
        from panet.zoo.registry import create_model

        rows = [r + (f"{count_parameters(create_model(r[0])):,}",) for r in rows]
    header = ("name", "task", "scale", "blocks", "features", "kind", "description") + (
        ("parameters",) if args.params else ()
    )
    _print_table(header, rows)
    from panet.zoo.pretrained import list_weights

    shipped = list_weights(task=args.task)
    print()
    if not shipped:
        print("shipped weights: none yet" + (f" for {args.task}" if args.task else ""))
        return
    rows = []
    for w in shipped:
        card = w.card
        evals = card.get("eval", [])
        best = ", ".join(f"{_eval_label(w.task, e)} {e['psnr']:.2f}" for e in evals[:3]) + (
            " ..." if len(evals) > 3 else ""
        )
        data = "+".join(card.get("training_data", {}))
        rows.append(
            (
                w.name,
                w.task,
                w.level_text,
                card.get("preset", ""),
                str(card.get("iterations", "")),
                data,
                best or "not evaluated",
            )
        )
    print("shipped weights (panet restore --weights NAME; cards in panet/zoo/shipped/*.json):")
    _print_table(("name", "task", "level", "preset", "iterations", "trained on", "PSNR (card)"), rows)


def _eval_label(task: str, row: dict) -> str:
    """'CBSD68 σ50' for a card's eval row of a blind model (its rows differ by level); 'Set5' for SR weights."""
    from panet.tasks import get_task

    spec = get_task(task)
    if spec.upscales or spec.level_name is None or row.get("level") is None:
        return row["set"]
    return f"{row['set']} {spec.level_symbol}{row['level']:g}"


def _print_table(header: tuple, rows: list[tuple]) -> None:
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    for row in [header] + rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


def _cmd_convert(args: argparse.Namespace) -> None:
    from panet.zoo.release import from_official
    from panet.zoo.weights import save_weights

    kwargs: dict[str, bool | int | float] = {}
    for item in args.release_arg or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise CliError(f"--release-arg expects KEY=VALUE, got {item!r}")
        flag = {"true": True, "false": False}.get(value.lower())
        try:
            kwargs[key] = flag if flag is not None else float(value) if "." in value else int(value)
        except ValueError:
            raise CliError(f"--release-arg {key}: expected a number, true or false, got {value!r}") from None
    output = Path(args.output)
    refuse_overwriting_inputs([output], [Path(args.checkpoint)])
    if output.exists() and not args.overwrite:
        raise CliError(f"{output} exists (use --overwrite)")
    model = from_official(args.checkpoint, **kwargs)
    from panet.nn.model import PANet

    if not isinstance(model, PANet):
        raise CliError("the checkpoint holds an attention block alone; only networks can be converted")
    save_weights(model, output, metadata={"source": f"release checkpoint {Path(args.checkpoint).name}"})
    print(f"wrote {output} ({model.config['blocks']} blocks, {model.config['features']} features, scale {model.scale})")


def _expand_inputs(items: list[str]) -> list[Path]:
    import glob

    from panet.data.images import IMAGE_SUFFIXES

    inputs: list[Path] = []
    for item in items:
        path = Path(item)
        if any(c in item for c in "*?[") and not path.exists():
            matches = sorted(Path(m) for m in glob.glob(item, recursive=True))
            if not matches:
                raise CliError(f"no files match {item}")
            inputs += [m for m in matches if m.is_file() and m.suffix.lower() in IMAGE_SUFFIXES]
        elif path.is_dir():
            inputs += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif not path.exists():
            raise CliError(f"input not found: {path}")
        else:
            inputs.append(path)
    return inputs


def _file_identity(path: Path) -> tuple:
    """What makes two paths one file: the inode where the file exists (hard links, other names), else the path."""
    try:
        stat = path.stat()
        return ("inode", stat.st_dev, stat.st_ino)
    except OSError:
        return ("path", path.resolve())


def refuse_overwriting_inputs(outputs: list[Path], inputs: list[Path]) -> None:
    """CliError, before any work, when an output would be one of the inputs (never allowed, ``--overwrite`` or
    not) or two inputs would write the same output (one result would silently replace the other)."""
    by_target: dict[Path, Path] = {}
    for source, target in zip(inputs, outputs):
        key = target.resolve()
        if key in by_target:
            raise CliError(
                f"{by_target[key]} and {source} would both be written to {target}; restore them into "
                "separate folders or rename one"
            )
        by_target[key] = source
    sources = {_file_identity(path) for path in inputs}
    for target in outputs:
        if _file_identity(target) in sources:
            raise CliError(f"{target} is an input; refusing to write over it (choose another output)")


def _restore_targets(args: argparse.Namespace, inputs: list[Path]) -> list[Path]:
    """Where each input's result goes: ``-o`` itself for one input file, else ``-o/<stem>.png``."""
    from panet.data.images import IMAGE_SUFFIXES, output_format

    output = Path(args.output)
    many = len(inputs) > 1 or Path(args.inputs[0]).is_dir() or any(c in args.inputs[0] for c in "*?[")
    if not many:
        output_format(output)  # an unknown suffix fails before any work
        return [output]
    if output.exists() and not output.is_dir():
        raise CliError(f"{output} is a file; several inputs need an output folder")
    if not output.exists() and output.suffix.lower() in IMAGE_SUFFIXES:
        raise CliError(f"several inputs need an output folder, and {output} looks like a file name; give a folder")
    return [output / f"{path.stem}.png" for path in inputs]


def _cmd_restore(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from panet.data.images import check_pixels, read_image_float, write_image_float
    from panet.hardware import bf16_speedup, native_bf16
    from panet.inference.restore import check_run_options, image_colors, resolve_device, resolve_tiling, restore_float

    tile = _int_or_auto(args.tile, "--tile", 8)
    overlap = _int_or_auto(args.tile_overlap, "--tile-overlap", 0)
    if overlap is not None and tile is not None and overlap >= tile:
        raise CliError(f"--tile-overlap must be smaller than the tile, got {overlap} for --tile {tile}")
    if args.max_pixels < 1:
        raise CliError(f"--max-pixels must be positive, got {args.max_pixels}")
    if args.memory_budget is not None and not args.memory_budget > 0:
        raise CliError(f"--memory-budget must be a positive number of GB, got {args.memory_budget}")
    budget = None if args.memory_budget is None else int(args.memory_budget * 2**30)
    inputs = list(dict.fromkeys(_expand_inputs(args.inputs)))  # a file named twice is restored once
    if not inputs:
        raise CliError("no input images found")
    targets = _restore_targets(args, inputs)
    refuse_overwriting_inputs(targets, inputs)
    device = resolve_device(args.device)
    # The shipped default depends on the image (a colour photo goes to the colour denoiser, a gray one to the gray
    # denoiser), so without --weights / --model the network is chosen per image, once per kind of image.
    per_image = not (args.weights or args.model)
    networks: dict[tuple | None, tuple] = {}  # keyed by the file (resolver cache key), so each loads once
    # `--sigma auto`: the level is estimated from each image (and chooses its weights); None until then
    estimated = _spec(args.task).level_name if args.task else None
    if args.noise and args.task and args.noise not in _spec(args.task).noise_models:
        raise CliError(f"--task {args.task} has no noise model {args.noise!r}")
    if args.noise and estimated and getattr(args, estimated, None) is not None:
        raise CliError(f"--noise {args.noise} picks blind weights: leave out --{estimated}")
    if estimated is None or getattr(args, estimated, None) != "auto":
        estimated = None
    else:
        setattr(args, estimated, None)

    def network(colors: int | None):
        if not per_image and None in networks:  # --weights / --model: one network for every image
            return networks[None]
        choice = _choose(args, colors if per_image else None)
        key = choice.key if per_image else None
        if key not in networks:
            model, task = _restore_network(args, colors if per_image else None, choice=choice)
            check_run_options(task, tiling=args.tiling, ensemble=args.ensemble, precision=args.precision, device=device)
            size, gap = resolve_tiling(model, device, tile, overlap)
            if args.tiling == "tile" and gap >= size:
                raise CliError(f"--tile-overlap {gap} must be smaller than the tile ({size})")
            networks[key] = model.to(device).eval(), task, (size, gap)
        return networks[key]

    if args.precision == "bf16" and not native_bf16(device):
        print(
            f"note: this {device.type} has no native bf16, so --precision bf16 is emulated and slower than fp32",
            file=sys.stderr,
        )
    elif args.precision == "bf16" and device.type == "cpu" and bf16_speedup("cpu") < 1:
        print(
            f"note: bf16 measured {bf16_speedup('cpu'):.2f}x the speed of fp32 on this CPU; --precision auto "
            "would run fp32",
            file=sys.stderr,
        )
    # A bad task, level, option, --weights or --model fails once, before any file is read; the shipped default is
    # only looked up here (it is loaded for the first image, whose colours decide which one).
    if per_image:
        _choose(args, None)
        check_run_options(
            args.task, tiling=args.tiling, ensemble=args.ensemble, precision=args.precision, device=device
        )
    else:
        network(None)
    failures: list[str] = []
    with tqdm(inputs, desc="restore", unit="img", disable=len(inputs) < 2 or None, file=sys.stderr) as bar:
        for path, target in zip(bar, targets):
            try:
                if target.exists() and not args.overwrite:
                    raise CliError(f"{target} exists (use --overwrite)")
                array, info = read_image_float(path, max_pixels=args.max_pixels)
                if info.get("notice"):
                    print(f"note: {info['notice']}", file=sys.stderr)
                if estimated is not None:
                    from panet.data.noise_level import estimate_sigma

                    level = round(estimate_sigma(array), 1)
                    setattr(args, estimated, level)
                    print(f"{path}: estimated {_spec(args.task).level_title} {level:g}", file=sys.stderr)
                model, task, (size, gap) = network(image_colors(array))
                scale = getattr(model, "scale", 1)
                check_pixels(
                    array.shape[0] * scale, array.shape[1] * scale, args.max_pixels, f"{path}: the x{scale} output"
                )
                with _TileBar() as tiles:
                    run = dict(
                        tiling=args.tiling,
                        tile=size,
                        overlap=gap,
                        ensemble=args.ensemble,
                        precision=args.precision,
                        progress=tiles.update,
                        memory_budget=budget,
                    )
                    restored = restore_float(model, array, task=task, device=device, bayer=args.bayer, **run)
                for note in write_image_float(target, restored, info):
                    print(f"note: {note}", file=sys.stderr)
                tqdm.write(f"{path} -> {target}", file=sys.stdout)
            except (CliError, ValueError, FileNotFoundError, OSError) as exc:
                if len(inputs) == 1:
                    raise CliError(_describe(exc)) from None
                failures.append(str(path))
                print(f"panet: error: {_describe(exc)}", file=sys.stderr)
    if failures:
        raise CliError(
            f"{len(failures)} of {len(inputs)} images failed: {', '.join(failures[:5])}"
            + (" ..." if len(failures) > 5 else "")
        )


def _describe(exc: BaseException) -> str:
    """One line for an error: an OSError names its file and the system's reason (a full disk, no permission)."""
    if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror}"
    return str(exc)


class _TileBar:
    """A progress bar over one image's tiles (on a terminal, for images of many tiles); each pass (x8 ensemble,
    channel by channel) restarts it."""

    def __init__(self, show: bool | None = None):  # None: on a terminal only
        self.bar: Any = None  # a tqdm bar once the first tile reports
        self.show = show

    def update(self, done: int, total: int) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(
                total=total,
                desc="tiles",
                unit="tile",
                leave=False,
                file=sys.stderr,
                disable=True if total < 8 else (None if self.show is None else not self.show),
            )
        elif done == 1:
            self.bar.reset(total=total)
        self.bar.update(1)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()


def _int_or_auto(text: str, flag: str, minimum: int) -> int | None:
    """None for ``auto``, else the number, at least ``minimum``."""
    if text == "auto":
        return None
    try:
        value = int(text)
    except ValueError:
        raise CliError(f"{flag} expects a number or auto, got {text!r}") from None
    if value < minimum:
        raise CliError(f"{flag} must be at least {minimum}, got {value}")
    return value


def _choose(args: argparse.Namespace, colors: int | None = None):
    """What `panet restore` / `explain` run: :func:`panet.zoo.resolver.choose_network` for the command's flags."""
    from panet.zoo.resolver import choose_network

    task = args.task
    preset = args.model if args.model and not args.weights else None
    if not (task or args.weights or preset):
        raise CliError(f"give --task ({', '.join(_task_choices())}) or --weights NAME|FILE")
    level = _task_level(args, required=False) if task else None
    if task and _spec(task).upscales and level is None and not (args.weights or preset):
        raise CliError(f"--task {task} needs --{_spec(task).level_name}")
    try:
        return choose_network(
            task,
            level,
            weights=args.weights,
            preset=preset,
            random_init=args.random_init,
            colors=colors,
            seed=args.seed,
            noise=getattr(args, "noise", None),
        )
    except ValueError as exc:
        raise CliError(str(exc)) from None


def _restore_network(args: argparse.Namespace, colors: int | None = None, announce: bool = True, choice=None):
    """The network for `panet restore` / `explain`: --weights NAME|FILE, a preset with --random-init, or the
    shipped default for --task and its level (for images with ``colors`` channels, when given). ``choice``: what
    :func:`_choose` already chose for these flags."""
    from panet.zoo.pretrained import weights_task
    from panet.zoo.resolver import load_network

    choice = choice or _choose(args, colors)
    try:
        network = load_network(choice)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    model, task = network.model, network.task
    if choice.kind == "random":
        print(f"note: {choice.name} has RANDOM weights (untrained)", file=sys.stderr)
    elif not args.weights and announce:
        print(f"using {choice.label}", file=sys.stderr)
    elif task and _spec(task).upscales and args.scale is not None and args.scale != model.scale:
        raise CliError(f"{args.weights} upscale x{model.scale}, not x{args.scale}")
    elif task and not _spec(task).upscales:
        _check_in_range(args, task, weights_task(args.weights)[1])
    return model, task


def _check_in_range(args: argparse.Namespace, task: str, level) -> None:
    from panet.zoo.pretrained import level_range

    value = _task_level(args, task, required=False)
    low, high = level_range(level)
    if value is not None and low is not None and high is not None and not low <= value <= high:
        print(f"note: these weights were trained for levels {low:g}..{high:g}, not {value:g}", file=sys.stderr)


def _spec(task: str):
    from panet.tasks import get_task

    return get_task(task)


def _task_level(args: argparse.Namespace, task: str | None = None, *, required: bool = True) -> float | None:
    """The level flag that belongs to the task; the others must be absent."""
    from panet.tasks import level_names

    task = task or args.task
    wanted = _spec(task).level_name
    for flag in level_names():
        if flag != wanted and getattr(args, flag, None) is not None:
            raise CliError(f"--{flag} does not apply to --task {task}")
    if wanted is None:
        return None
    value = getattr(args, wanted)
    if value is None and required:
        raise CliError(f"--task {args.task} needs --{wanted}")
    return value


def _load_network(args: argparse.Namespace):
    """--weights NAME|FILE, or --model NAME with --random-init (export, eval)."""
    from panet.zoo.resolver import resolve_network

    if not args.weights and not args.random_init:
        raise CliError(
            f"no trained weights given for {args.model!r}; pass --weights NAME|FILE, or --random-init "
            "to run the preset untrained"
        )
    try:
        network = resolve_network(
            None, weights=args.weights, preset=None if args.weights else args.model, random_init=True, seed=args.seed
        )
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if network.choice.kind == "random":
        print(f"note: {args.model} has RANDOM weights (untrained)", file=sys.stderr)
    return network.model


def _cmd_export(args: argparse.Namespace) -> None:
    from panet.inference.export import export_model

    if bool(args.weights) == bool(args.model):
        raise CliError("give --weights NAME|FILE, or --model NAME with --random-init")
    output = Path(args.output)
    refuse_overwriting_inputs([output], [Path(args.weights)] if args.weights else [])
    if output.exists() and not args.overwrite:
        raise CliError(f"{output} exists (use --overwrite)")
    model = _load_network(args)
    export_model(model, output, format=args.format)
    print(
        f"wrote {output} ({args.format}, input float32 (1, {model.colors}, H, W) in [0, 1], output x{model.scale}); "
        "memory grows with (H*W)^2: run it on tiles"
    )


def _cmd_explain(args: argparse.Namespace) -> None:
    import numpy as np

    from panet.data.images import read_image_float
    from panet.inference.explain import attention_for_pixel, render
    from panet.inference.restore import image_colors

    try:
        x, y = (int(v) for v in args.at.split(","))
    except ValueError:
        raise CliError(f"--at expects X,Y in pixels, got {args.at!r}") from None
    array, _ = read_image_float(args.image)
    array = array[:, :, : image_colors(array)]  # drop alpha
    model, _task = _restore_network(args, array.shape[2])
    if array.shape[2] != model.colors:
        array = array.mean(axis=2, keepdims=True) if model.colors == 1 else np.repeat(array, 3, axis=2)
    output = Path(args.output)
    refuse_overwriting_inputs([output], [Path(args.image)])
    if output.exists() and not args.overwrite:
        raise CliError(f"{output} exists (use --overwrite)")
    result = attention_for_pixel(model, array, y=y, x=x, window=args.window)
    render(array, result, output)
    top, left, hh, ww = result.window
    print(f"attention of pixel ({x}, {y}) within the {ww}x{hh} window at ({left}, {top}):")
    for scale, share in zip(result.scales, result.shares):
        print(f"  scale {scale:.1f}: {100 * share:5.1f}%")
    print(f"wrote {output}")


def _cmd_serve(args: argparse.Namespace) -> None:
    from panet.apps.serve import serve

    try:
        serve(args.host, args.port, random_init=args.random_init, tile=args.tile, max_pixels=args.max_pixels)
    except OSError as exc:
        raise CliError(f"cannot listen on {args.host}:{args.port} ({exc.strerror or exc})") from None


def _cmd_eval(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from panet.data.datasets import EvalPairs, find_set
    from panet.evaluation.evaluate import evaluate_set, format_table, network_restorer, write_results

    sources = [x for x in (args.model, args.weights, args.baseline) if x]
    if len(sources) != 1:
        raise CliError("give exactly one of --model, --weights, --baseline")
    model = None
    if args.weights:
        from panet.zoo.resolver import resolve_network

        # checks the weights' recorded task against --task, and supplies it when --task is absent
        try:
            network = resolve_network(args.task, None, weights=args.weights)
        except ValueError as exc:
            raise CliError(str(exc)) from None
        model, args.task = network.model, network.task
        if args.task is None:
            raise CliError(f"{args.weights} does not record its task; give --task ({', '.join(_task_choices())})")
        if _spec(args.task).upscales and args.scale is None:
            args.scale = model.scale
    if args.task is None:
        raise CliError(f"give --task ({', '.join(_task_choices())})")
    level = _task_level(args)
    folders: list[tuple[str, Path]] = []
    for name in (args.sets or "").split(","):
        if name.strip():
            folders.append((name.strip(), find_set(name.strip(), args.data_root)))
    for folder in args.data or []:
        folders.append((Path(folder).name, Path(folder)))
    if not folders:
        raise CliError("give --sets NAME[,NAME...] or --data DIR")
    if args.baseline:
        from panet.evaluation.baselines import make_baseline

        restorer, colors, label = make_baseline(args.baseline, args.task, level), None, f"baseline {args.baseline}"
    else:
        model = model or _load_network(args)
        from panet.inference.restore import resolve_tiling

        tile, overlap = resolve_tiling(model, "cpu", args.tile, args.tile_overlap)  # as panet restore chooses
        restorer = network_restorer(
            model, args.task, tiling=args.tiling, tile=tile, overlap=overlap, precision=args.precision
        )
        colors = model.colors
        label = args.model or args.weights
    if args.noise and args.noise not in _spec(args.task).noise_models:
        raise CliError(f"--task {args.task} has no noise model {args.noise!r}")
    pairs = [
        (name, EvalPairs(folder, task=args.task, level=level, colors=colors, noise=args.noise))
        for name, folder in folders
    ]
    for _, p in pairs:
        if args.limit:
            p.files = p.files[: args.limit]
    total = sum(len(p) for _, p in pairs)
    results = []
    with tqdm(total=total, desc="eval", unit="img", disable=args.quiet or None, file=sys.stderr) as bar:
        for name, p in pairs:
            results += evaluate_set(
                restorer,
                p,
                set_name=name,
                scale=int(level) if _spec(args.task).upscales and level is not None else 1,
                progress=bar.update,
            )
    print(f"{label}: task {args.task}" + (f", level {level:g}" if level is not None else ""))
    print(format_table(results, per_image=not args.means_only))
    meta = {
        "task": args.task,
        "level": level,
        "source": label,
        "tiling": args.tiling if not args.baseline else None,
        "sets": [name for name, _ in folders],
    }
    for out in (args.json, args.csv):
        if out:
            write_results(out, results, meta)


def _cmd_train(args: argparse.Namespace) -> None:
    from panet.train.config import load_config
    from panet.train.loop import train

    overrides = [*args.overrides, *([f"data.data_root={args.data_root}"] if args.data_root else [])]
    config = load_config(args.config, overrides)
    command = " ".join(["panet", "train", args.config, *args.overrides])
    result = train(config, resume=args.resume, max_steps=args.max_steps, quiet=args.quiet, command=command)
    print(f"step {result['step']}: checkpoint and log in {result['out_dir']}")


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is in 0..65535, got {value}")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line (the usage itself is one ``--help`` away)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _task_choices() -> list[str]:
    from panet.tasks import TASKS

    return list(TASKS)


def _level_type(integer: bool, auto: bool):
    kind = int if integer else float

    def parse(text: str):
        if auto and text == "auto":
            return "auto"
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"not {'an integer' if integer else 'a number'}{' or auto' if auto else ''}: {text!r}"
            ) from None

    return parse


def _add_task_options(
    p: argparse.ArgumentParser, task_help: str | None = None, *, levels: bool = True, auto: bool = False
) -> None:
    """--task and each task's level flag (--scale, --sigma, --quality), all from the Task table. ``auto``: a level
    that can be measured from the image may be given as ``auto``."""
    from panet.tasks import TASKS

    p.add_argument("--task", choices=_task_choices(), help=task_help)
    if not levels:
        return
    for spec in TASKS.values():
        if spec.level_name:
            estimable = auto and spec.level_estimable
            p.add_argument(
                f"--{spec.level_name}",
                type=_level_type(spec.integer_level, estimable),
                help=f"{spec.level_title} for --task {spec.name}: {spec.level_rule}"
                + (", or auto: estimated from each image (panet.estimate_sigma), and printed" if estimable else ""),
            )


def _network_flags(p: argparse.ArgumentParser, weights_help: str) -> None:
    """The flags that choose the network, the same in every subcommand that runs one."""
    p.add_argument("--weights", help=weights_help)
    p.add_argument("--model", help="a preset name (see `panet models`), with --random-init")
    p.add_argument("--random-init", action="store_true", help="run --model with random weights (a pipeline demo)")
    p.add_argument("--seed", type=int, default=0, help="the seed of --random-init's weights")


def build_parser() -> argparse.ArgumentParser:
    from panet import __version__
    from panet.apps.serve import MAX_PIXELS as SERVE_MAX_PIXELS
    from panet.data.images import DEFAULT_MAX_PIXELS
    from panet.tasks import TASKS

    parser = _Parser(prog="panet", description="Pyramid Attention Networks for image restoration")
    parser.add_argument("--version", action="version", version=f"panet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("models", help="list the model presets")
    p.add_argument("pattern", nargs="?", default="*", help="glob over preset names")
    _add_task_options(p, levels=False)
    p.add_argument("--params", action="store_true", help="also count parameters (builds each model)")
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser("convert", help="convert a checkpoint of the authors' release to .safetensors")
    p.add_argument("checkpoint", help="the release's .pt state dict (read with weights_only=True)")
    p.add_argument("-o", "--output", required=True, help="output .safetensors file")
    p.add_argument(
        "--release-arg",
        action="append",
        metavar="KEY=VALUE",
        help="what a state dict cannot hold, under the release's names (level, softmax_scale, average, res_scale)",
    )
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser("eval", help="PSNR / SSIM on benchmark sets with the paper's protocol")
    _add_task_options(p, "required unless --weights records it (weights written by panet do)")
    _network_flags(p, "shipped weights name or a .safetensors / release .pt file")
    p.add_argument("--baseline", help="bicubic | identity | bm3d | menon | malvar")
    p.add_argument(
        "--noise",
        choices=sorted({model for spec in TASKS.values() for model in spec.noise_models}),
        help="degrade with this noise model of the task instead of its standard one (camera: camera-like noise of "
        "sensor strength --sigma, seeded per image like the standard degradation)",
    )
    p.add_argument("--sets", help="comma-separated set names under the data root (Set5,Set14,...)")
    p.add_argument("--data", action="append", help="a folder of ground-truth images (repeatable)")
    p.add_argument("--data-root", help="root of the benchmark sets (default: $PANET_DATA)")
    p.add_argument(
        "--tiling",
        choices=["legacy", "tile", "none"],
        default="legacy",
        help="legacy: the release's forward_chop; tile: overlapping tiles, blended; none: whole images",
    )
    p.add_argument("--tile", type=int, help="tile size for --tiling tile (default: as panet restore --tile auto)")
    p.add_argument("--tile-overlap", type=int, help="overlap for --tiling tile (default: as panet restore)")
    p.add_argument(
        "--precision",
        choices=["fp32", "bf16", "auto"],
        default="fp32",
        help="fp32 (default: scores that do not depend on the machine); bf16 autocast, or auto as panet restore "
        "runs, to measure what they cost. The attention's scores stay fp32",
    )
    p.add_argument("--limit", type=int, help="only the first N images of each set")
    p.add_argument("--json", help="write per-image and mean results as JSON")
    p.add_argument("--csv", help="write per-image results as CSV")
    p.add_argument("--means-only", action="store_true", help="print only the set means")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("serve", help="a local web page: drop an image, restore it, compare, download")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: this machine only)")
    p.add_argument("--port", type=_port, default=8000, help="TCP port, 0..65535 (0: any free port)")
    p.add_argument("--tile", type=int, help="tile size (default: as panet restore --tile auto)")
    p.add_argument(
        "--max-pixels",
        type=int,
        default=SERVE_MAX_PIXELS,
        help="largest upload, by the size its header declares (default: %(default)s)",
    )
    p.add_argument("--random-init", action="store_true", help="demo tasks without shipped weights with random weights")
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("explain", help="where the pyramid attention looked for one pixel, per level")
    p.add_argument("image", help="the degraded input image")
    p.add_argument("--at", required=True, help="X,Y of the pixel (input coordinates)")
    p.add_argument("-o", "--output", required=True, help="PNG with one heat map per pyramid level")
    _add_task_options(p)
    _network_flags(p, "shipped weights name or a .safetensors / release .pt file")
    p.add_argument("--window", type=int, default=128, help="analysed window around the pixel (a restore tile)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_cmd_explain)

    from panet.inference.export import INPUT_CONTRACT

    p = sub.add_parser(
        "export",
        help="export a network to ONNX or TorchScript (dynamic height and width)",
        description=f"Export a network to ONNX or TorchScript. The graph's {INPUT_CONTRACT}. The file records this "
        "contract and the network's settings (TorchScript: extra file panet.json; ONNX: metadata_props).",
    )
    _network_flags(p, "shipped weights name or a .safetensors / release .pt file")
    p.add_argument("--format", required=True, choices=["onnx", "torchscript"])
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("train", help="train from a YAML recipe (see configs/)")
    p.add_argument("config", help="YAML recipe")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. iterations=1000 optim.lr=2e-4")
    p.add_argument(
        "--data-root", help="folder holding the recipe's named sets (default: data.data_root or $PANET_DATA)"
    )
    p.add_argument("--resume", action="store_true", help="continue from out_dir/checkpoint.pt")
    p.add_argument("--max-steps", type=int, help="stop after this many steps in this call (resume later)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("restore", help="restore images (shipped weights by default)")
    p.add_argument("inputs", nargs="+", help="image files or folders")
    p.add_argument(
        "-o",
        "--output",
        required=True,
        help="output file (one input: .png, .jpg, .tif, .bmp or .webp) or folder (several inputs, or a "
        "folder: PNGs with the inputs' stems)",
    )
    _add_task_options(
        p, "what to undo; picks the shipped weights for it and its level (not needed with --weights)", auto=True
    )
    _network_flags(p, "shipped weights name (see `panet models`) or a .safetensors / release .pt file")
    p.add_argument(
        "--noise",
        choices=sorted({model for spec in TASKS.values() for model in spec.noise_models}),
        help="the shipped weights trained on this noise model instead of the task's standard one (camera: a blind "
        "denoiser for real photos' camera noise: --task denoise --noise camera, without --sigma)",
    )
    p.add_argument(
        "--tiling",
        choices=["tile", "legacy", "none"],
        default="tile",
        help="tile (default): overlapping tiles, blended, bounded memory and time; legacy: the release's "
        "forward_chop; none: the whole image at once (attention cost grows with the square of its area)",
    )
    p.add_argument(
        "--tile",
        default="auto",
        help="tile size in input pixels for --tiling tile, or auto (default): for shipped weights the "
        "setting docs/tiling.md measured fastest within 0.02 dB of the best PSNR, else 32. Attention looks "
        "within a tile; its cost per pixel grows with the tile's area, and tiles larger than the training "
        "context score lower",
    )
    p.add_argument(
        "--tile-overlap",
        default="auto",
        help="overlap of neighbouring tiles, or auto (default): the measured one with --tile auto, else a "
        "quarter of the tile (at most 16)",
    )
    p.add_argument(
        "--memory-budget",
        type=float,
        metavar="GB",
        help="memory for one batch of tiles (default: a quarter of the free memory, at most 2 GB)",
    )
    p.add_argument("--ensemble", action="store_true", help="average the 8 flips/transposes (8x the time)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16", "fp16"],
        default="auto",
        help="auto (default): bf16 autocast where this machine has bf16 and a quick measurement finds it "
        "faster than fp32, else fp32; bf16 or fp16 (CUDA) force autocast. The attention's scores stay fp32",
    )
    p.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        help="refuse inputs and outputs larger than this many pixels (default: %(default)s); the size is "
        "read from the file's header before decoding",
    )
    p.add_argument(
        "--bayer",
        choices=["GRBG", "RGGB", "GBRG", "BGGR"],
        default="GRBG",
        type=str.upper,
        help="--task demosaic: the Bayer pattern of the input mosaic, a 1-channel raw image or the "
        "3-channel zero-filled layout (default: GRBG)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (never one of the inputs)")
    p.set_defaults(func=_cmd_restore)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # `panet train cfg.yaml --resume key=value`: overrides may follow the flags
    if extra and getattr(args, "func", None) is _cmd_train and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        args.func(args)
    except CliError as exc:
        print(f"panet: error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, KeyError, TypeError, ImportError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"panet: error: {message}", file=sys.stderr)
        return 2
    except OSError as exc:  # a read-only folder, a full disk: what the system said, and about which file
        print(f"panet: error: {_describe(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("panet: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
