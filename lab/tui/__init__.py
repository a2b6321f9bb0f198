"""The on-screen lab (Textual).

``make_app`` in :mod:`lab.tui.app` builds the app; :mod:`lab.tui.runner`
runs the machine on its own thread. Nothing below ``lab.tui`` imports this
package.
"""
