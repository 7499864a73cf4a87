"""A user's own COCO set, as the issue's user brought one: 8-bit pseudo-colour pictures at 291 px
(objects ~25-50 px) and one plain COCO file with the user's own category ids and names.

    python 2026-11-28-make_user_coco.py <parcel dataset from xray simulate --scene parcel> <out>
"""

import json
import sys
from pathlib import Path

import cv2

SCALE = 0.7  # the user's viewer exports at 291 px


def main(src: Path, out: Path) -> None:
    (out / "images").mkdir(parents=True, exist_ok=True)
    images: list[dict] = []
    anns: list[dict] = []
    cats: list[dict] = []
    remap: dict[int, int] = {}
    for split in ("train", "val", "test"):
        coco = json.loads((src / "annotations" / f"{split}.json").read_text())
        if not cats:
            cats = [{"id": 100 + c["id"] * 7, "name": c["name"].upper()} for c in coco["categories"]]
            remap = {c["id"]: 100 + c["id"] * 7 for c in coco["categories"]}
        for im in coco["images"]:
            new_id = len(images) + 1
            name = f"img_{new_id:05d}.png"
            pic = cv2.imread(str(src / "images" / im["file_name"]), cv2.IMREAD_COLOR)
            pic = cv2.resize(pic, None, fx=SCALE, fy=SCALE, interpolation=cv2.INTER_AREA)
            cv2.imwrite(str(out / "images" / name), pic)
            images.append({"id": new_id, "file_name": name, "width": pic.shape[1], "height": pic.shape[0]})
            for a in coco["annotations"]:
                if a["image_id"] == im["id"]:
                    box = [v * SCALE for v in a["bbox"]]
                    anns.append({"id": len(anns) + 1, "image_id": new_id, "category_id": remap[a["category_id"]],
                                 "bbox": box, "area": box[2] * box[3], "iscrowd": 0})
    (out / "instances.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    sides = sorted(max(a["bbox"][2], a["bbox"][3]) for a in anns)
    print(f"{len(images)} images, {len(anns)} boxes; longer box side p5/p50/p95: "
          f"{sides[len(sides) // 20]:.0f}/{sides[len(sides) // 2]:.0f}/{sides[-len(sides) // 20]:.0f} px")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
