"""The SDK's own units: settings are checked and named, arguments come back as JSON, text is clipped
at a character boundary. The end-to-end cases (a real node, real worker processes) are in the
repository's tests/workers.rs."""
import asyncio
import unittest

import rota_worker
from rota_worker import ConfigError, Worker, _clip, _output, _plain, MAX_TEXT_BYTES


class Settings(unittest.TestCase):
    def test_bad_settings_are_named(self):
        cases = [
            (dict(targets=[]), "targets"),
            (dict(targets="h:1", worker_id="bad id"), "worker_id"),
            (dict(targets="h:1", slots=0), "slots"),
            (dict(targets="h:1", slots=10_001), "slots"),
            (dict(targets="h:1", tags={"ok": "no spaces"}), "tags['ok']"),
        ]
        for kwargs, field in cases:
            with self.assertRaises(ConfigError) as e:
                Worker(**kwargs)
            self.assertTrue(str(e.exception).startswith(field), (kwargs, str(e.exception)))

    def test_handler_names(self):
        w = Worker("h:1", worker_id="w")
        for bad, why in [("", "1-128"), ("a b", "1-128"), ("noop", "built-in"), ("x" * 129, "1-128")]:
            with self.assertRaises(ConfigError) as e:
                w.register(bad, lambda ctx, args: None)
            self.assertIn(why, str(e.exception))
        w.register("report.daily", lambda ctx, args: None)
        with self.assertRaises(ConfigError) as e:
            w.register("report.daily", lambda ctx, args: None)
        self.assertIn("registered twice", str(e.exception))

    def test_run_needs_a_handler(self):
        with self.assertRaises(ConfigError) as e:
            asyncio.run(Worker("h:1", worker_id="w").run())
        self.assertIn("handlers", str(e.exception))

    def test_default_id_is_valid(self):
        self.assertTrue(rota_worker._valid_name(Worker("h:1").worker_id))


class Values(unittest.TestCase):
    def test_integral_numbers_come_back_as_ints(self):
        self.assertEqual(_plain({"n": 3.0, "x": 1.5, "l": [1.0, "a", {"k": 2.0}], "b": True}),
                         {"n": 3, "x": 1.5, "l": [1, "a", {"k": 2}], "b": True})

    def test_output(self):
        self.assertEqual(_output(None), "")
        self.assertEqual(_output("text"), "text")
        self.assertEqual(_output({"a": 1}), '{"a": 1}')

    def test_clip_keeps_whole_characters(self):
        s = "é" * MAX_TEXT_BYTES
        c = _clip(s)
        self.assertLessEqual(len(c.encode()), MAX_TEXT_BYTES)
        self.assertEqual(c, "é" * (MAX_TEXT_BYTES // 2))
        self.assertEqual(_clip("short"), "short")


if __name__ == "__main__":
    unittest.main()
