"""Run training recipes one after another on one CPU core, resuming each from its checkpoint.

    nohup python scripts/train_queue.py --core 0 pa-edsr-s-x2 pa-edsr-s-x3 pa-edsr-s-x4 > runs/queue0.log 2>&1 &
    nohup python scripts/train_queue.py --core 1 panet-dn-s panet-dn-gray-s panet-car-s panet-demosaic-s > runs/queue1.log 2>&1 &

    # or one shared list, one worker per core: each takes the first recipe nobody is training
    nohup python scripts/train_queue.py --core 0 pa-edsr-s-x2 panet-dn-s pa-edsr-s-x3 ... > runs/queue0.log 2>&1 &
    nohup python scripts/train_queue.py --core 1 pa-edsr-s-x2 panet-dn-s pa-edsr-s-x3 ... > runs/queue1.log 2>&1 &

A session on a 2-core machine ends after a few hours and kills its processes; rerunning the same command resumes
where the checkpoints stopped (a finished run is skipped). Each recipe runs as `panet train configs/NAME.yaml
[--resume]` with one thread pinned to --core, so two queues share the machine without slowing each other.

Workers claim a recipe with an flock on `.queue.lock` in its run folder (the kernel releases it when the worker
dies, so nothing stale survives a killed session), so several workers given the same list share it out and stay busy until it is done. A recipe that
starts from another run's output (`init: runs/X/checkpoint.pt` or `runs/X/weights.safetensors`) waits until that run has
finished.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK = ".queue.lock"


def _try_lock(run_dir: Path):
    """The run's lock file, open and exclusively flock-ed, or None when another process holds it.
    The kernel drops the lock when its holders die, so a killed session leaves nothing stale behind."""
    handle = open(run_dir / LOCK, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def _claim(run_dir: Path):
    """Lock the run for this worker (its pid in the file, for people reading it), or None when it is taken."""
    run_dir.mkdir(parents=True, exist_ok=True)
    handle = _try_lock(run_dir)
    if handle is not None:
        handle.truncate(0)
        handle.write(str(os.getpid()))
        handle.flush()
    return handle


def _locked(run_dir: Path) -> bool:
    """Whether a live worker (or the training it started) holds the run's lock."""
    if not (run_dir / LOCK).exists():
        return False
    handle = _try_lock(run_dir)
    if handle is None:
        return True
    handle.close()
    return False


def _finished(checkpoint: Path, iterations: int | None = None) -> bool:
    from panet.train.artifacts import load_checkpoint

    if not checkpoint.exists():
        return False
    state = load_checkpoint(checkpoint)
    return state["step"] >= (iterations if iterations is not None else state["config"]["iterations"])


def main() -> None:
    sys.path.insert(0, str(ROOT / "src"))
    from panet.train.config import load_config

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipes", nargs="+", help="names of configs/*.yaml, in order of priority")
    parser.add_argument("--core", type=int, help="pin to this CPU core (Linux)")
    parser.add_argument("--data-root", default=os.environ.get("PANET_DATA", str(ROOT.parent / "shared" / "data")))
    parser.add_argument(
        "--root", type=Path, default=ROOT, help="project folder with configs/ (default: this repository)"
    )
    parser.add_argument(
        "--poll", type=float, default=60.0, help="seconds between looks while every recipe left is busy"
    )
    args = parser.parse_args()
    root = args.root.resolve()
    if args.core is not None:
        os.sched_setaffinity(0, {args.core})
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PANET_DATA": args.data_root}
    configs = {}
    for name in args.recipes:
        path = root / "configs" / f"{name}.yaml"
        if not path.is_file():
            sys.exit(f"train_queue: no recipe {path}")
        configs[name] = (path, load_config(path))
    announced: set[str] = set()
    while True:
        waiting = []
        for name, (path, config) in configs.items():
            run_dir = root / config.out_dir
            checkpoint = run_dir / "checkpoint.pt"
            if _finished(checkpoint, config.iterations):
                if name not in announced:
                    print(f"{name}: finished ({config.iterations} iterations)", flush=True)
                    announced.add(name)
                continue
            init = root / config.init if config.init else None
            # a recipe that starts from another run's output (its checkpoint or its EMA weights) waits for that run
            if (
                init is not None
                and init.name in ("checkpoint.pt", "weights.safetensors")
                and not checkpoint.exists()
                and not _finished(init.parent / "checkpoint.pt")
            ):
                in_queue = any(root / c.out_dir == init.parent for _, c in configs.values())
                if not in_queue and not _locked(init.parent):
                    sys.exit(
                        f"train_queue: {name} starts from {config.init}, which is unfinished and not in this "
                        f"queue; add its recipe to the list"
                    )
                waiting.append(f"{name} (waits for {init.parent.name})")
                continue
            lock = _claim(run_dir)
            if lock is None:
                waiting.append(f"{name} (another worker trains it)")
                continue
            try:
                cmd = [sys.executable, "-m", "panet", "train", str(path.relative_to(root))]
                cmd += ["--resume"] if checkpoint.exists() else []
                print(" ".join(cmd), flush=True)
                # the training inherits the lock: a worker killed alone does not free a run that still trains
                if subprocess.run(cmd, cwd=root, env=env, pass_fds=[lock.fileno()]).returncode:
                    sys.exit(f"train_queue: {name} failed (see above); the queue stops")
            finally:
                lock.close()
            break  # rescan from the top: earlier recipes may have become runnable
        else:
            if not waiting:
                print("queue done", flush=True)
                return
            print(f"nothing to take now: {', '.join(waiting)}; looking again in {args.poll:g} s", flush=True)
            time.sleep(args.poll)


if __name__ == "__main__":
    main()
