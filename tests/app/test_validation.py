"""Request parsing at the starter: what is accepted, and a 400 naming the problem for the rest."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from api.validation import RequestError, parse_submission, parse_wait
from contracts import instance_id_for_client
from settings import settings_from

pytestmark = pytest.mark.unit

SETTINGS = settings_from(
    {
        "URL_ALLOWED_HOSTS": "images.example.org",
        "MAX_IMAGES_PER_TASK": "4",
        "MAX_IMAGE_BYTES": "1000",
        "SYNC_WAIT_MAX_SECONDS": "30",
    }
)
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"0" * 20).decode()


def submit(document: Any, content_type: str = "application/json", query: dict[str, str] | None = None):
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    return parse_submission(body, content_type, query or {}, SETTINGS)


def rejected(document: Any, **kwargs: Any) -> RequestError:
    with pytest.raises(RequestError) as caught:
        submit(document, **kwargs)
    return caught.value


def test_new_shape_with_every_image_kind() -> None:
    submission = submit(
        {
            "models": ["resnet18", "ResNet50", "RESNET18"],
            "images": [
                {"blob": "photos/cat.jpg"},
                {"url": "https://images.example.org/a.jpg"},
                {"data": PNG, "name": "mine.png"},
            ],
            "top_k": 3,
        }
    )
    assert submission.models == ["resnet18", "resnet50"]
    assert submission.top_k == 3
    blob, url, data = submission.images
    assert blob.source is not None and blob.source.blob == "photos/cat.jpg"
    assert url.source is not None and url.source.url == "https://images.example.org/a.jpg"
    assert data.data == base64.b64decode(PNG) and data.name == "mine.png"


def test_single_model_string_legacy_field_and_default_top_k() -> None:
    assert submit({"model": "ResNet50", "images": [{"blob": "photos/a.jpg"}]}).models == ["resnet50"]
    legacy = submit({"model_type": "ResNet18", "images": [{"blob": "photos/a.jpg"}]})
    assert legacy.models == ["resnet18"] and legacy.top_k == 5


def test_data_url_prefix_is_accepted() -> None:
    submission = submit({"model": "resnet18", "images": [{"data": f"data:image/png;base64,{PNG}"}]})
    assert submission.images[0].content_type == "image/png"


def test_raw_image_upload_takes_models_from_the_query() -> None:
    submission = submit(b"\xff\xd8\xff rest", "image/jpeg", {"model": "resnet50,resnet18", "top_k": "2"})
    assert submission.models == ["resnet50", "resnet18"]
    assert submission.images[0].data == b"\xff\xd8\xff rest"
    assert submission.top_k == 2
    both = rejected(b"\xff\xd8\xff rest", content_type="image/jpeg", query={"model": "bogus", "models": "resnet18"})
    assert both.field == "model" and "exactly one of" in both.message


@pytest.mark.parametrize(
    ("document", "field", "words"),
    [
        (b"{not json", None, "not valid JSON"),
        (b"", None, "empty"),
        ([1, 2], None, "JSON object"),
        ({"images": [{"blob": "photos/a.jpg"}]}, "models", "exactly one of"),
        ({"model": "resnet18", "models": ["resnet50"], "images": [{"blob": "a/b"}]}, "models", "exactly one of"),
        ({"model": "vgg16", "images": [{"blob": "photos/a.jpg"}]}, "model", "resnet18"),
        ({"models": [], "images": [{"blob": "photos/a.jpg"}]}, "models", "non-empty"),
        ({"model": "resnet18", "images": []}, "images", "non-empty"),
        ({"model": "resnet18"}, "images", "non-empty"),
        ({"model": "resnet18", "images": [{"blob": "photos/a.jpg"}] * 5}, "images", "limit of 4"),
        ({"model": "resnet18", "images": [{"data": "***not base64***"}]}, "images[0].data", "not valid base64"),
        ({"model": "resnet18", "images": [{"data": ""}]}, "images[0].data", "empty"),
        (
            {"model": "resnet18", "images": [{"data": base64.b64encode(b"x" * 1001).decode()}]},
            "images[0].data",
            "over the 1000-byte limit",
        ),
        ({"model": "resnet18", "images": [{"blob": "photos/a.jpg", "url": "https://x"}]}, "images[0]", "exactly one"),
        ({"model": "resnet18", "images": ["photos/a.jpg"]}, "images[0]", "must be an object"),
        ({"model": "resnet18", "images": [{"blob": "../etc/passwd"}]}, "images[0].blob", "images[0].blob"),
        (
            {"model": "resnet18", "images": [{"url": "https://evil.example.com/a.jpg"}]},
            "images[0].url",
            "not in URL_ALLOWED_HOSTS",
        ),
        ({"model": "resnet18", "images": [{"url": "file:///etc/passwd"}]}, "images[0].url", "http(s)"),
        ({"model": "resnet18", "images": [{"blob": "photos/a.jpg"}], "top_k": 0}, "top_k", "from 1 to 100"),
        ({"model": "resnet18", "images": [{"blob": "photos/a.jpg"}], "top_k": 101}, "top_k", "from 1 to 100"),
        ({"model": "resnet18", "images": [{"blob": "photos/a.jpg"}], "top_k": "five"}, "top_k", "integer"),
        ({"model": "resnet18", "images": [{"blob": "photos/a.jpg"}], "top_k": True}, "top_k", "integer"),
        ({"model": "resnet18", "images": [{"blob": "photos/a.jpg"}], "topk": 3}, "topk", "unknown field"),
        ({"model": "resnet18", "images": [{"blob": "photos/a.jpg"}], "task_id": "17"}, "task_id", "digits only"),
        ({"model": "resnet18", "images": [{"blob": "photos/a.jpg", "name": "\ud800x"}]}, "images[0].name", "surrogate"),
        ({"model": "resnet18", "images": [{"blob": "photos/\udfff.jpg"}]}, "images[0].blob", "surrogate"),
        (
            {"model": "resnet18", "images": [{"blob": "photos/a.jpg", "name": "n" * 2049}]},
            "images[0].name",
            "limit of 2048",
        ),
        (
            {"model": "resnet18", "images": [{"url": "https://images.example.org/" + "a" * 2048}]},
            "images[0].url",
            "limit of 2048",
        ),
        (  # 1,025 emoji: 1,025 characters to Python, 2,050 UTF-16 units to NVARCHAR(2048)
            {"model": "resnet18", "images": [{"blob": "photos/a.jpg", "name": "\U0001f600" * 1025}]},
            "images[0].name",
            "2050 characters long (UTF-16 units",
        ),
        (
            {"model": "resnet18", "images": [{"blob": "photos/a.jpg"}], "reply_to": "https://x/\ud800"},
            "reply_to",
            "surrogate",
        ),
    ],
)
def test_bad_requests_name_the_problem(document: Any, field: str | None, words: str) -> None:
    error = rejected(document)
    assert error.field == field
    assert words in error.message
    assert error.to_json()["error"] == error.message


@pytest.mark.parametrize("top_k", ["--5", "²", "٣", "+-1", "1" * 30, 10**4000, -(10**4000), [[[]]], {"a": 1}, 2.5])
def test_top_k_that_is_no_small_ascii_integer_is_a_400(top_k: Any) -> None:
    error = rejected({"model": "resnet18", "images": [{"blob": "photos/a.jpg"}], "top_k": top_k})
    assert error.field == "top_k" and len(error.message) < 120
    upload = rejected(b"\xff\xd8", content_type="image/jpeg", query={"model": "resnet18", "top_k": str(top_k)})
    assert upload.field == "top_k"


@pytest.mark.parametrize(("top_k", "expected"), [(" 7 ", 7), ("+3", 3), (4, 4)])
def test_top_k_accepts_ascii_integers(top_k: Any, expected: int) -> None:
    assert submit({"model": "resnet18", "images": [{"blob": "photos/a.jpg"}], "top_k": top_k}).top_k == expected


@pytest.mark.parametrize("body", [b"[" * 100_000 + b"]" * 100_000, b'{"top_k": ' + b"9" * 5000 + b"}"])
def test_json_the_parser_refuses_is_a_400(body: bytes) -> None:
    assert "not valid JSON" in rejected(body).message


def test_a_task_id_with_a_letter_and_a_name_of_2048_characters_are_accepted() -> None:
    document = {"model": "resnet18", "images": [{"blob": "photos/a.jpg", "name": "n" * 2048}], "task_id": "17a"}
    submission = submit(document)
    assert submission.routing.task_id == "17a" and submission.images[0].source is not None
    assert submission.images[0].source.name == "n" * 2048
    assert submit({"model": "resnet18", "images": [{"blob": "photos/a.jpg", "name": "\U0001f600" * 1024}]})


def test_unsupported_content_type_and_upload_without_model() -> None:
    assert "unsupported Content-Type" in rejected(b"hello", content_type="text/plain").message
    assert "?model=" in rejected(b"\xff\xd8", content_type="image/jpeg").message
    assert "empty" in rejected(b"", content_type="image/png", query={"model": "resnet18"}).message


def test_url_images_are_refused_when_no_host_is_allowed() -> None:
    closed = settings_from({})
    with pytest.raises(RequestError, match="URL_ALLOWED_HOSTS"):
        parse_submission(
            json.dumps({"model": "resnet18", "images": [{"url": "https://a.example/x.jpg"}]}).encode(),
            "application/json",
            {},
            closed,
        )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(None, None), ("", None), ("0", 0.0), ("-0", 0.0), ("2.5", 2.5), ("1e1", 10.0), ("999", 30.0), ("9" * 400, 30.0)],
)
def test_wait_is_capped(raw: str | None, expected: float | None) -> None:
    query = {} if raw is None else {"wait": raw}
    assert parse_wait(query, SETTINGS) == expected


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ("-1", "must not be negative"),
        ("soon", "number of seconds"),
        ("nan", "number of seconds"),
        ("inf", "number of seconds"),
        ("1_0", "number of seconds"),
        ("\u0665", "number of seconds"),
    ],
)
def test_bad_wait_is_rejected_with_its_cause(raw: str, words: str) -> None:
    with pytest.raises(RequestError, match=words):
        parse_wait({"wait": raw}, SETTINGS)


def test_several_models_as_answers_and_the_model_type_column_write_them() -> None:
    document = {"model_type": "ResNet18,ResNet50", "images": [{"blob": "photos/a.jpg"}]}
    assert submit(document).models == ["resnet18", "resnet50"]
    assert rejected({**document, "model_type": "ResNet18,"}).field == "model_type"


@pytest.mark.parametrize("ref", ["\n", "\t", "a?b", "?", "#", "a/b", "a\\b", "\x85", ""])
def test_refs_no_instance_can_have_are_not_asked_about(ref: str) -> None:
    """The SDK's client puts the id into its URL unencoded: ``?`` or a newline there asked about the list of all
    instances and answered 500 (found by tests/app/test_fuzz_api.py)."""
    assert instance_id_for_client(ref) is None


@pytest.mark.parametrize(
    ("ref", "sent"),
    [
        ("3f2a9c", "3f2a9c"),
        ("my-task.1", "my-task.1"),
        ("session@night", "session%40night"),
        ("a b", "a%20b"),
        ("a+b", "a%2Bb"),  # the extension decodes a path's + as a space
        ("%5A1", "%255A1"),  # unencoded, the task Z1
        ("é", "%C3%A9"),
        ("9" * 30, "9" * 30),
    ],
)
def test_instance_ids_are_asked_about_percent_encoded_whole(ref: str, sent: str) -> None:
    assert instance_id_for_client(ref) == sent


def test_the_not_stored_answer_names_a_long_ref_cut_short() -> None:
    from api.tasks import not_stored_reason

    assert "'abc'" in not_stored_reason("abc", None)
    message = not_stored_reason("x" * 5000, None)
    assert len(message) < 300 and "x" * 100 + "..." in message


def test_query_parameters_a_submission_does_not_read_are_refused_not_ignored() -> None:
    body = {"model": "resnet18", "images": [{"blob": "photos/a.jpg"}]}
    lost_key = rejected(body, query={"task_id": "qq1", "wait": "5", "code": "function-key"})
    assert lost_key.field == "task_id" and "not read with a JSON body" in lost_key.message
    assert submit(body, query={"wait": "5", "code": "function-key"}).routing.task_id is None
    typo = rejected(b"\xff\xd8", content_type="image/jpeg", query={"model": "resnet18", "topk": "3"})
    assert typo.field == "topk" and "'topk'" in typo.message and "'top_k'" in typo.message
    upload = submit(
        b"\xff\xd8",
        content_type="image/jpeg",
        query={"model": "resnet18", "top_k": "3", "task_id": "up-1", "name": "x.jpg", "wait": "1", "Code": "k"},
    )
    assert upload.top_k == 3 and upload.routing.task_id == "up-1"


def test_error_messages_never_echo_a_client_s_megabyte() -> None:
    many_keys = {"model": "resnet18", "images": [{"blob": "photos/a.jpg"}], **{f"k{i}": 1 for i in range(20_000)}}
    huge_key = {"model": "resnet18", "images": [{"blob": "photos/a.jpg", "x" * 1_000_000: 1}]}
    huge_model = {"model": "r" * 1_000_000, "images": [{"blob": "photos/a.jpg"}]}
    for document in (many_keys, huge_key, huge_model):
        error = rejected(document)
        assert len(error.message) < 400 and len(error.field or "") <= 64, error.message[:400]
    assert "and 19995 more" in rejected(many_keys).message
