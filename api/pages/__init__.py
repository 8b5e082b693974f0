"""Server-rendered web pages: templates, the page login, HTML errors and the token heatmaps."""
