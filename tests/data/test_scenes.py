import pytest

from roboscape_r.data import scenes as S


def test_registry_has_tasks_scenes_and_factors():
    assert {"PickCube", "PushCube", "PullCube", "StackCube"} <= set(S.TASKS)
    in_domain, ood = S.scenes_in_split("in-domain"), S.scenes_in_split("ood")
    assert len(in_domain) >= 2 and not set(in_domain) & set(ood)
    factors = {S.SCENES[name].factor for name in ood}
    assert len(factors) >= 5 and "base" not in factors


def test_instructions_are_data_with_paraphrases():
    texts = S.instructions()
    for task in S.TASKS:
        assert len(set(texts[task])) >= 5, task


def test_unknown_task_and_scene_list_the_valid_ones():
    with pytest.raises(ValueError, match="valid tasks: PickCube"):
        S.check_tasks(["PickCub"])
    with pytest.raises(ValueError, match="id-default-wood"):
        S.resolve_scenes(["nope"])
    with pytest.raises(ValueError, match="unknown split"):
        S.scenes_in_split("test")


def test_resolve_expands_splits():
    assert S.resolve_scenes(["ood"]) == S.scenes_in_split("ood")
    assert S.resolve_scenes(["id-cyan-wood", "in-domain"])[0] == "id-cyan-wood"


def test_register_all_and_env_ids():
    from mani_skill.utils.registration import REGISTERED_ENVS

    S.register_all()
    for task in S.TASKS:
        for scene in S.SCENES:
            uid = S.env_id(task, scene)
            assert (uid in REGISTERED_ENVS) == S.scene_applies(task, scene)
            if S.scene_applies(task, scene):
                assert S.task_of_env_id(uid) == task
    with pytest.raises(ValueError, match="not one of our tasks"):
        S.task_of_env_id("CartPole-v1")


def test_bad_env_module():
    with pytest.raises(ValueError, match="--env-module 'no_such_module_xyz'"):
        S.import_env_module("no_such_module_xyz")
