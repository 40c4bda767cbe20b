"""The one wording for what pydantic refused (amgs/config_errors.py), as every config loader uses it."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from amgs.config_errors import format_errors, problems


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class View(_Strict):
    name: str
    region: list[int] | None = None


class Mqtt(_Strict):
    host: str = "localhost"
    port: int = Field(1883, ge=1, le=65535)


class Config(_Strict):
    mqtt: Mqtt = Mqtt()
    views: list[View] = []
    backup: Mqtt | None = None


def _error(data: dict) -> ValidationError:
    try:
        Config.model_validate(data)
    except ValidationError as e:
        return e
    raise AssertionError("expected a validation error")


def test_names_key_value_and_the_keys_allowed_where_an_unknown_one_is():
    e = _error(
        {"mqtt": {"hots": "x", "port": 0}, "views": [{"name": "v", "colour": 1}], "backup": {"x": 1}, "y": 2}
    )
    assert set(problems(e, Config)) == {
        "unknown key 'mqtt.hots' (allowed here: host, port)",
        "mqtt.port = 0: Input should be greater than or equal to 1",
        "unknown key 'views.0.colour' (allowed here: name, region)",
        "unknown key 'backup.x' (allowed here: host, port)",
        "unknown key 'y' (allowed here: mqtt, views, backup)",
    }
    assert format_errors(_error({"z": 1}), noun="column") == "unknown column 'z'"  # no model: no list


def test_a_whole_section_of_the_wrong_type_is_not_dumped():
    e = _error({"views": [{"region": [1, 2]}]})
    assert problems(e, Config) == ["views.0.name: Field required"]
