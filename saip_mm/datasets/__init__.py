# Owned by the data pipeline work: PersonImageDataset and the SAIP view transforms.
