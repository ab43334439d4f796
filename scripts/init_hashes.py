"""Hash every registered network's freshly initialised state_dict, to check that a refactoring
leaves initialisation (and so the random stream it draws) bit for bit as it was.

    PYTHONPATH=old/src python scripts/init_hashes.py before.json
    PYTHONPATH=src     python scripts/init_hashes.py after.json
    python scripts/init_hashes.py --compare before.json after.json

For each model: ``torch.manual_seed(0); create_model(name)``, then the sha256 of every tensor's
bytes (with its dtype and shape) and of the CPU generator's state afterwards.
"""

from __future__ import annotations

import hashlib
import json
import sys

import torch


def hashes(names: list[str]) -> dict[str, dict[str, str]]:
    import convatlas

    result = {}
    for name in names or convatlas.list_models():
        torch.manual_seed(0)
        state = convatlas.create_model(name).state_dict()
        entry = {}
        for key, tensor in state.items():
            t = tensor.detach().contiguous().cpu().reshape(-1)
            digest = hashlib.sha256(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"").hexdigest()
            entry[key] = f"{tensor.dtype}:{tuple(tensor.shape)}:{digest}"
        entry["__rng_after__"] = hashlib.sha256(torch.get_rng_state().numpy().tobytes()).hexdigest()
        result[name] = entry
        print(f"{name}: {len(state)} tensors", flush=True)
    return result


def compare(before: dict, after: dict) -> int:
    problems = [f"only in one: {sorted(set(before) ^ set(after))}"] if set(before) != set(after) else []
    for name in sorted(set(before) & set(after)):
        if list(before[name]) != list(after[name]):
            problems.append(f"{name}: state_dict keys or their order differ")
        differ = [k for k in before[name] if before[name][k] != after[name].get(k)]
        if differ:
            problems.append(f"{name}: {len(differ)} entries differ, e.g. {differ[:3]}")
    print("\n".join(problems) or f"{len(before)} models: bitwise equal")
    return 1 if problems else 0


if __name__ == "__main__":
    torch.set_num_threads(1)
    if sys.argv[1:2] == ["--compare"]:
        sys.exit(compare(*(json.load(open(path)) for path in sys.argv[2:4])))
    json.dump(hashes(sys.argv[2:]), open(sys.argv[1], "w"), indent=0, sort_keys=True)
