"""Which checkpoints a relaxation resumes (no DFT)."""

from ase.build import bulk

from dftscreen.recovery import resumable, starting_structure_fingerprint

GPAW = {"xc": "PBE", "ecut_eV": 400.0}


def test_fingerprint_sees_positions_cell_species_and_moments():
    si = bulk("Si", "diamond", a=5.43)
    moved, strained, magnetic = si.copy(), si.copy(), si.copy()
    moved.positions[1, 0] += 1e-3
    strained.set_cell(si.cell * 1.001, scale_atoms=True)
    magnetic.set_initial_magnetic_moments([1.0, 0.0])
    fingerprints = {
        starting_structure_fingerprint(a) for a in (si, moved, strained, magnetic, bulk("Ge", "diamond", a=5.43))
    }
    assert len(fingerprints) == 5
    assert starting_structure_fingerprint(si.copy()) == starting_structure_fingerprint(si)


def test_only_same_settings_and_same_start_resume():
    start = starting_structure_fingerprint(bulk("Si", "diamond", a=5.43))
    checkpoint = {"gpaw_settings": GPAW, "start_fingerprint": start}
    assert resumable(checkpoint, GPAW, start)
    assert not resumable(checkpoint, {**GPAW, "ecut_eV": 500.0}, start)
    assert not resumable(checkpoint, GPAW, starting_structure_fingerprint(bulk("Si", "diamond", a=5.40)))
    assert not resumable(None, GPAW, start)
    # Written before fingerprints existed: resumed on its settings, as then.
    assert resumable({"gpaw_settings": GPAW}, GPAW, start)
