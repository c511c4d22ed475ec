"""The DiMSUM explorer: a Gradio app to generate images and see how DiMSUM works.

Entry point: `python app/app.py` (also the Hugging Face Spaces `app_file`).
"""
