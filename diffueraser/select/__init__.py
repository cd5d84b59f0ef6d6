"""Making masks by selecting what to remove, tracked through the whole video.

- `prompts`: clicks, boxes and words on frames, grouped by object (JSON, options), checked against the video;
- `flowtrack`: the weight-free tracker (GrabCut seeds, DIS optical flow, per-frame re-fit);
- `sam`: transformers' SAM 2.1 / EdgeTAM video models driven through their inference session;
- `track`: `track_to_file(video, prompts, output, tracker="auto")`, the one entry point;
- `command`: `python -m diffueraser mask ...`, and the prompt options of the erase command;
- `text*`: burnt-in text detection (the text options of the same command).
"""
