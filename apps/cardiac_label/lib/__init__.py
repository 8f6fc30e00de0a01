"""Task classes of the cardiac_label MONAI Label app: inference (infers.py) and training (trainers.py)."""
