"""The price models a PathRequest can name, and their parameters, as the proto describes them.

The ``model`` oneof of PathRequest lists the models and each model's message
holds its parameters. A parameter field may carry an ``example`` option (a
typical value: the sample CLI's default) and a comment saying what it means,
read from the descriptor set ``make proto`` writes beside the generated
modules. Nothing here names a model or a parameter, so a model added to the
proto reaches MODELS, path_request and the command line by itself.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError

from marketdata.v1 import market_data_pb2 as pb

MODELS = tuple(f.name for f in pb.PathRequest.DESCRIPTOR.oneofs_by_name["model"].fields)
DESCRIPTOR_SET = "market_data.binpb"  # in the marketdata.v1 package, with the proto's comments

_PYTHON_TYPES = {
    FieldDescriptor.CPPTYPE_DOUBLE: float,
    FieldDescriptor.CPPTYPE_FLOAT: float,
    FieldDescriptor.CPPTYPE_INT32: int,
    FieldDescriptor.CPPTYPE_INT64: int,
    FieldDescriptor.CPPTYPE_UINT32: int,
    FieldDescriptor.CPPTYPE_UINT64: int,
    FieldDescriptor.CPPTYPE_STRING: str,
}


@dataclass(frozen=True)
class Parameter:
    """One single-valued number or text field of a parameters message."""

    name: str
    type: type  # float, int or str
    example: float | None  # the field's (example) option; None when it has none
    comment: str  # the field's comment in the .proto; empty when the descriptor set is missing


def path_message(model: str) -> type:
    """The message class of ``model``'s parameters, e.g. pb.MertonModel for "merton"."""
    return getattr(pb, pb.PathRequest.DESCRIPTOR.fields_by_name[model].message_type.name)


def single_instrument(model: str) -> bool:
    """Whether every field of ``model``'s message is a parameter (a basket's are not)."""
    message = path_message(model).DESCRIPTOR
    return len(message_parameters(message)) == len(message.fields)


def parameters(model: str) -> tuple[Parameter, ...]:
    """The parameters of ``model``'s message, in field order."""
    return message_parameters(path_message(model).DESCRIPTOR)


@functools.cache
def message_parameters(message: Descriptor) -> tuple[Parameter, ...]:
    """The single-valued number and text fields of ``message``, in field order."""
    notes = _comments()
    return tuple(
        Parameter(
            name=f.name,
            type=_PYTHON_TYPES[f.cpp_type],
            example=_example(f),
            comment=notes.get((message.full_name, f.name), ""),
        )
        for f in message.fields
        if f.cpp_type in _PYTHON_TYPES and not _repeated(f)
    )


def _example(field: FieldDescriptor) -> float | None:
    options = field.GetOptions()
    return options.Extensions[pb.example] if options.HasExtension(pb.example) else None


def _repeated(field: FieldDescriptor) -> bool:
    # protobuf 6 has is_repeated; older releases only the label.
    return field.is_repeated if hasattr(field, "is_repeated") else field.label == field.LABEL_REPEATED


@functools.cache
def _comments() -> dict[tuple[str, str], str]:
    """(message full name, field name) -> the comment above the field, for top-level messages.

    protoc's Python output drops comments; the descriptor set written with
    --include_source_info keeps them, each at path [4, message, 2, field].
    Without that file (a build that skipped it) there are no comments.
    """
    try:
        data = resources.files("marketdata.v1").joinpath(DESCRIPTOR_SET).read_bytes()
        files = descriptor_pb2.FileDescriptorSet.FromString(data).file
    except (OSError, DecodeError):
        return {}
    found = {}
    for file in files:
        if file.name != pb.DESCRIPTOR.name:
            continue
        for location in file.source_code_info.location:
            path = location.path
            if len(path) == 4 and path[0] == 4 and path[2] == 2 and location.leading_comments:
                message = file.message_type[path[1]]
                name = f"{file.package}.{message.name}" if file.package else message.name
                found[name, message.field[path[3]].name] = " ".join(location.leading_comments.split())
    return found
