"""Draw the README's segmentation pictures (docs/images/seg-*.png).

    python scripts/make_seg_examples.py                       # trains `convatlas train unet_mini` first (~4 min)
    python scripts/make_seg_examples.py --run runs/unet_mini   # or draws from a run you trained

Training is `convatlas train unet_mini` with no other arguments (its card's recipe, the digit
scenes); the pictures are then what `convatlas predict RUN SCENE -o FILE --crf` and
`convatlas eval RUN` write, plus the upsampling figure of `convatlas.viz.segmentation`.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from convatlas.data.masks import load_segmentation
from convatlas.train import evaluate, load_run, predict, train
from convatlas.viz.segmentation import plot_class_iou, save_segmentation_figure, save_upsampling_figure

SCENES = (0, 7, 21)  # test scenes drawn


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="a finished unet_mini run (default: train one)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "images")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        run = args.run or train("unet_mini", out=Path(tmp) / "unet_mini", quiet=True).run_dir
        loaded = load_run(run)
        report = evaluate(loaded)
        plot_class_iou(report.iou, args.out / "seg-class-iou.png",
                       f"unet_mini on the digit scenes: per-class IoU (mIoU {report.miou:.3f})")
        test = load_segmentation("digit-scenes").test
        for number, index in enumerate(SCENES):
            image = test.images[index]
            result = predict(loaded, image[None], crf=True)[0]
            save_segmentation_figure(args.out / f"seg-scene-{number}.png", image, result.mask, loaded.classes,
                                     truth=test.masks[index], refined=result.refined,
                                     title=f"unet_mini, test scene {index}")
        save_upsampling_figure(test.images[SCENES[0], 0].float() / 255, args.out / "seg-upsampling.png")
    print(f"wrote {args.out}/seg-*.png (mIoU {report.miou:.4f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
