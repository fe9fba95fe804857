"""What petseg needs from a Label Studio project's labelling config, or why it cannot label it.

A project says in XML which tool its annotators use and which labels exist:

    <View>
      <Image name="image" value="$image"/>
      <BrushLabels name="tag" toName="image">
        <Label value="cat"/><Label value="dog"/>
      </BrushLabels>
    </View>

Pre-annotations must name the same tool (``from_name``), image (``to_name``) and label values,
or Label Studio shows nothing. The model's classes are matched to the labels by name, ignoring
case; a config with none of them, or with no brush or polygon tool on an image, is refused with
the reason, before any photo is sent. Labels the model does not know are left to the annotators.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

TOOLS = {"brushlabels": "brush", "polygonlabels": "polygon"}
"""Label Studio's tags petseg fills (lower case, as its exports name the region types)."""
MAX_CONFIG_CHARS = 100_000
"""A labelling config is a few hundred characters; anything near this is not one."""


class LabelConfigError(ValueError):
    """The project's labelling config cannot take petseg's pre-annotations, and why."""


@dataclass(frozen=True)
class Project:
    tool: str
    """"brush" or "polygon": the kind of regions to make."""
    region_type: str
    """The tag as results name it: "brushlabels" or "polygonlabels"."""
    from_name: str
    to_name: str
    image_key: str
    """The task data field holding the photo's URL ($image in the Image tag -> "image")."""
    labels: dict[int, str]
    """Model class id -> the config's label value for it (background is never predicted)."""


def read(config: Any, classes: Iterable[dict[str, Any]]) -> Project:
    """The project for a labelling config and the model card's ``classes`` (id, name)."""
    if not isinstance(config, str) or not config.strip():
        raise LabelConfigError("the project has no labelling config (label_config is empty)")
    if len(config) > MAX_CONFIG_CHARS:
        raise LabelConfigError(f"the labelling config is over {MAX_CONFIG_CHARS} characters")
    try:
        root = ElementTree.fromstring(config)
    except ElementTree.ParseError as exc:
        raise LabelConfigError(f"the labelling config is not XML: {exc}") from exc
    images = {
        tag.get("name"): tag.get("value", "")
        for tag in root.iter()
        if tag.tag.lower() == "image" and tag.get("name")
    }
    wanted = {c["name"].lower(): int(c["id"]) for c in classes if int(c["id"]) > 0}
    tools = [tag for tag in root.iter() if tag.tag.lower() in TOOLS]
    if not tools:
        raise LabelConfigError(
            "the labelling config has no <BrushLabels> or <PolygonLabels> tag: petseg "
            "pre-annotates masks with Label Studio's brush or polygons"
        )
    problems = []
    for tool in tools:
        tag = f"<{tool.tag} name={tool.get('name')!r}>"
        to_name = tool.get("toName", "")
        if to_name not in images:
            problems.append(f"{tag} labels {to_name!r}, which is no <Image> tag")
            continue
        values = [label.get("value", "") for label in tool if label.tag.lower() == "label"]
        labels = {wanted[v.lower()]: v for v in values if v.lower() in wanted}
        if not labels:
            known = ", ".join(sorted(wanted))
            problems.append(f"{tag} has labels {values}, none of the model's classes ({known})")
            continue
        return Project(
            tool=TOOLS[tool.tag.lower()],
            region_type=tool.tag.lower(),
            from_name=tool.get("name", ""),
            to_name=to_name,
            image_key=images[to_name].lstrip("$"),
            labels=labels,
        )
    raise LabelConfigError(
        "the labelling config cannot take petseg's masks: " + "; ".join(problems)
    )


def template(classes: Iterable[dict[str, Any]], tool: str = "brush") -> str:
    """A labelling config for the model's classes (background is what no region covers), the
    one `petseg label-studio config` prints for a new project."""
    tag = {"brush": "BrushLabels", "polygon": "PolygonLabels"}[tool]
    labels = "".join(
        f'\n    <Label value="{c["name"]}" background="#{bytes(c["color"]).hex()}"/>'
        for c in classes
        if int(c["id"]) > 0
    )
    return (
        f'<View>\n  <Image name="image" value="$image" zoom="true"/>\n'
        f'  <{tag} name="tag" toName="image">{labels}\n  </{tag}>\n</View>\n'
    )
