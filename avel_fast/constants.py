"""The AVE data contract's fixed sizes and class list (docs/data.md#contract)."""

NUM_SEGMENTS = 10
NUM_EVENT_CLASSES = 28
BACKGROUND = 28  # index of the background class, the last of the 29 one-hot columns
NUM_CLASSES = NUM_EVENT_CLASSES + 1
AUDIO_DIM = 128
VISUAL_SHAPE = (7, 7, 512)

# Order of first appearance in the AVE Annotations.txt.
CLASS_NAMES = (
    "Church bell",
    "Male speech, man speaking",
    "Bark",
    "Fixed-wing aircraft, airplane",
    "Race car, auto racing",
    "Female speech, woman speaking",
    "Helicopter",
    "Violin, fiddle",
    "Flute",
    "Ukulele",
    "Frying (food)",
    "Truck",
    "Shofar",
    "Motorcycle",
    "Acoustic guitar",
    "Train horn",
    "Clock",
    "Banjo",
    "Goat",
    "Baby cry, infant cry",
    "Bus",
    "Chainsaw",
    "Cat",
    "Horse",
    "Toilet flush",
    "Rodents, rats, mice",
    "Accordion",
    "Mandolin",
)
