"""Image quality metrics: SWD and NDB/K without downloads; FID, KID, precision/recall and IS on Inception features."""
