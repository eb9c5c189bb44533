"""The task-teacher experiment configs build a consistent pipeline (teacher stage -> recordings -> JEDI)."""
import pytest
from hydra.utils import instantiate
from omegaconf import open_dict

from experiments.glue.build import build_datamodule, build_model


@pytest.mark.parametrize("experiment", ["jedi/memorypro_demo", "jedi/flipflop_demo"])
def test_student_runs_at_the_teachers_time_step(compose_cfg, experiment):
    cfg = compose_cfg([f"experiment={experiment}", "size=tiny"])
    stage = cfg.stages.teacher
    teacher_dm = build_datamodule(stage.data, {}, where="stages.teacher.data")
    teacher = build_model(stage.model, None, teacher_dm, {}, where="stages.teacher.model").eval()
    assert teacher.W_in.shape[1] == teacher_dm.dims["n_inputs"] == stage.data.task.get("n_bits", 3)
    assert teacher.readout.out_features == teacher_dm.dims["n_outputs"]
    dm = build_datamodule(cfg.data, {"teacher": teacher})
    with open_dict(cfg):
        cfg.model.pop("upstream", None)
    student = instantiate(cfg.model, **dm.dims, loss=instantiate(cfg.loss))
    # the autonomous student integrates the recordings at the teacher's alpha = dt / tau
    assert dm.full_set.dt == pytest.approx(stage.data.task.dt)
    assert student.rnn.alpha == pytest.approx(teacher.alpha)
    assert student.n_units == teacher.hparams.n_units
    assert set(cfg.data.heldout_conditions) <= set(dm.full_set.condition_names)
    assert "teacher_fixed_points" in dm.full_set.meta
    assert set(cfg.analysis) == {"probes", "generalisation", "recovery", "spectra"}
