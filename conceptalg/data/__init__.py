"""Built-in data: toy2d, shapes, scenes, digits, and loaders for CelebA and attribute folders."""
