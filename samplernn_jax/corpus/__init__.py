"""Audio in, standing on the core: fetching albums, cutting them into chunks, and the
synthesized demo corpus."""
