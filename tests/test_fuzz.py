"""Fuzzing the decoders against protobuf: same accept/reject, same values, only ValueError.

Each run checks at least 100,000 inputs of tools/fuzz.py's generator (random bytes,
structure-aware messages, mutations of valid ones), seeded by the run's date so that
different days explore different inputs; a failure names the seed and the input's
index, and ``tools/fuzz.py --seed S --show I`` reproduces it alone. Every input goes
through ``decode_message``, ``decode_animation_batch`` and ``decode_animation`` and
through protobuf: they must agree on accepting it and on the values. A read past the
end of a buffer would show as a crash under the checked build (bounds checks +
AddressSanitizer, see tests/README.md), or as a disagreement or an exception other
than ValueError here. ``tools/fuzz.py`` runs the same check at any count.
"""

from __future__ import annotations

import datetime
import importlib.util
import os
from pathlib import Path

import numpy as np

from avatar_nb import _flame, _wire

N_INPUTS = int(os.environ.get("AVATAR_NB_FUZZ_INPUTS", "100000"))
SEED = int(os.environ.get("AVATAR_NB_FUZZ_SEED", datetime.date.today().strftime("%Y%m%d")))


def _load_fuzz():
    path = Path(__file__).resolve().parent.parent / "tools" / "fuzz.py"
    spec = importlib.util.spec_from_file_location("avatar_nb_tools_fuzz", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fuzz = _load_fuzz()


def test_every_truncation_of_every_kind_of_message_agrees_with_protobuf():
    count = 0
    for seed in fuzz.seeds(np.random.default_rng(SEED)):
        for cut in range(len(seed) + 1):
            fuzz.compare(seed[:cut])
            count += 1
    assert count > 1000


def test_fuzz_agrees_with_protobuf():
    outcomes = fuzz.run(SEED, N_INPUTS)
    assert sum(outcomes.values()) == N_INPUTS
    by_outcome = {}
    for (_, outcome), n in outcomes.items():
        by_outcome[outcome] = by_outcome.get(outcome, 0) + n
    # every outcome happens often: the inputs reach deep into valid structure, animation
    # payloads included, and not only the first byte
    assert by_outcome["rejected"] > N_INPUTS // 20, (SEED, outcomes)
    assert by_outcome["accepted"] > N_INPUTS // 20, (SEED, outcomes)
    assert by_outcome["animation"] > N_INPUTS // 100, (SEED, outcomes)
    assert by_outcome["bad payload"] > N_INPUTS // 1000, (SEED, outcomes)


def test_fuzz_inputs_are_reproducible_by_seed_and_index():
    assert fuzz.input_at(SEED, 12345) == fuzz.input_at(SEED, 12345)
    assert fuzz.input_at(SEED, 12345) != fuzz.input_at(SEED, 12346)
    # an index's input does not depend on which indices ran before it
    first = [fuzz.input_at(SEED + 1, i) for i in range(10)]
    assert fuzz.input_at(SEED + 1, 7) == first[7]


def test_decoders_raise_only_value_error_on_garbage_of_every_length():
    rng = np.random.default_rng(SEED + 2)
    for n in range(0, 200):
        data = rng.bytes(n)
        for fn in (_wire.decode_message, _flame.decode_animation, lambda d: _flame.decode_animation_batch([d])):
            try:
                fn(data)
            except ValueError:
                pass
