"""A fit writes exactly under the dataDir it was given and deletes only its own sparkneural-<uuid> directory there;
no credential is ever held in dataDir or checkpointDir; the default data directory is private to the user."""

from __future__ import annotations

import importlib
import json
import os
import re
import stat

import pyarrow.fs as pafs
import pytest
from test_streaming import _objects, s3_dir  # noqa: F401  (the S3-compatible server on 127.0.0.1)

from sparkneural.data.filesystems import join, open_filesystem
from sparkneural.data.materialize import DATA_DIR_CONFS, data_dir_url
from sparkneural.estimators import MLPClassifier, MLPClassifierModel

materialize_module = importlib.import_module("sparkneural.data.materialize")  # the package exports a function of that name
FIT = dict(hiddenLayers=[4], epochs=1, verbose=0, seed=1, backend="local")
FIT_DIRECTORY = r"sparkneural-[0-9a-f]{32}"
ODD = {"hash": "#", "question mark": "?", "percent escape": "%41", "space": " ", "all four": "#?%41 "}


def _frame(spark, n=40):
    rows = [([float(i), float(i % 5)], float(i % 2)) for i in range(n)]
    return spark.createDataFrame(rows, "features array<double>, label double").coalesce(2)


@pytest.fixture
def deletes(monkeypatch):
    """Each delete a fit makes of its data: the path and the files under it just before."""
    made, real = [], materialize_module._delete

    def recording(fs, path, *rest):
        found = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True, recursive=True))
        made.append((path, sorted(os.path.basename(i.path) for i in found if i.is_file)))
        return real(fs, path, *rest)

    monkeypatch.setattr(materialize_module, "_delete", recording)
    return made


def _tree(root) -> dict[str, bytes]:
    return {os.path.relpath(os.path.join(d, f), root): open(os.path.join(d, f), "rb").read()
            for d, _, files in os.walk(root) for f in files}


@pytest.mark.parametrize("odd", ODD.values(), ids=ODD.keys())
def test_a_local_data_dir_with_an_odd_character_is_used_literally_and_only_the_fits_directory_is_deleted(spark, tmp_path, deletes, odd):
    victim = tmp_path / "victim"
    data_dir = tmp_path / f"victim{odd}run1" / "cache"
    data_dir.mkdir(parents=True)
    victim.mkdir()
    (victim / "keep.txt").write_text("the user's file above")
    (data_dir / "mine.txt").write_text("the user's file beside")
    before = _tree(tmp_path)

    MLPClassifier(dataDir=str(data_dir), **FIT).fit(_frame(spark))

    [(path, files)] = deletes
    assert os.path.dirname(path) == str(data_dir) and re.fullmatch(FIT_DIRECTORY, os.path.basename(path))
    assert any(re.fullmatch(r"part-\d+-\d+\.parquet", f) for f in files)  # the data went there
    assert _tree(tmp_path) == before and sorted(os.listdir(data_dir)) == ["mine.txt"]


@pytest.mark.parametrize("odd", ODD.values(), ids=ODD.keys())
def test_the_directory_a_fit_writes_resolves_to_the_literal_path_it_was_given(spark, tmp_path, odd):
    given = str(tmp_path / f"a{odd}b" / "cache")
    root = join(data_dir_url(spark, given), "sparkneural-" + "0" * 32)
    fs, path = open_filesystem(root)
    assert isinstance(fs, pafs.LocalFileSystem) and path == os.path.join(given, "sparkneural-" + "0" * 32)


@pytest.mark.parametrize("parent", [
    "/data/a#b?c%41d e", "relative/a#b?c%41 d", "/data/trailing/",
    "file:///data/a%23b%3Fc%2541d%20e",
    "s3://bucket/a%20b?endpoint_override=127.0.0.1:1&scheme=http&region=us-east-1",
    "s3a://bucket/dir/?region=us-east-1",
])
def test_joining_a_name_onto_a_directory_resolves_to_that_name_under_the_resolved_directory(parent):
    name = "sparkneural-" + "1" * 32
    fs, path = open_filesystem(parent)
    child_fs, child_path = open_filesystem(join(parent, name))
    assert type(child_fs) is type(fs) and child_path == f"{path.rstrip('/')}/{name}"


def test_delete_refuses_any_directory_but_the_fits_own(tmp_path):
    from sparkneural.data.materialize import _delete, is_fit_directory

    name = "sparkneural-" + "ab" * 16
    assert is_fit_directory(f"/data/{name}", name) and is_fit_directory(f"bucket/dir/{name}/", name)
    assert not is_fit_directory("/data/victim", name)  # a fragment cut the path short
    assert not is_fit_directory(f"/data/sparkneural-{'cd' * 16}", name)  # another fit's directory
    assert not is_fit_directory("/data/sparkneural-cache", "sparkneural-cache")  # not a name a fit creates
    users = tmp_path / "victim"
    users.mkdir()
    (users / "keep.txt").write_text("the user's file")
    with pytest.warns(UserWarning, match=r"sparkneural did not delete .*victim: it is not the directory sparkneural-abab"):
        _delete(pafs.LocalFileSystem(), str(users), name)
    assert (users / "keep.txt").read_text() == "the user's file"
    ours = tmp_path / name
    ours.mkdir()
    (ours / "part-00000-1.parquet").write_bytes(b"")
    _delete(pafs.LocalFileSystem(), str(ours), name)
    assert not ours.exists()


def _environment(monkeypatch, spark, **values):
    """Set environment variables on the driver and on Spark's Python workers for one test."""
    for name, value in values.items():
        monkeypatch.setenv(name, value)
        monkeypatch.setitem(spark.sparkContext.environment, name, value)


def test_an_s3_data_dir_with_a_fragment_is_refused_when_set_and_the_users_prefix_stays(spark, s3_dir, monkeypatch):  # noqa: F811
    url, fs = s3_dir
    mine = "sparkneural-test/a/mine.txt"
    with fs.open_output_stream(mine) as out:
        out.write(b"the user's object")
    # The endpoint comes from the environment, so the URL needs no options for a '#' to hide.
    endpoint = re.search(r"endpoint_override=([^&]+)", url)[1]
    _environment(monkeypatch, spark, AWS_ENDPOINT_URL=f"http://{endpoint}", AWS_DEFAULT_REGION="us-east-1",
                 AWS_ACCESS_KEY_ID="key", AWS_SECRET_ACCESS_KEY="secret")
    try:
        with pytest.raises(ValueError, match=r"^dataDir: expected a path, or a URI that names the directory it spells; found '#'"):
            MLPClassifier(dataDir="s3://sparkneural-test/a#b", **FIT).fit(_frame(spark))
        assert mine in _objects(fs)
    finally:
        fs.delete_dir_contents("sparkneural-test/a", missing_dir_ok=True)  # the server is shared with test_streaming


def test_a_fit_on_an_s3_prefix_deletes_only_its_own_directory_there(spark, s3_dir, deletes):  # noqa: F811
    url, fs = s3_dir
    beside = "sparkneural-test/fits/beside.txt"
    with fs.open_output_stream(beside) as out:
        out.write(b"the user's object beside")
    try:
        before = _objects(fs)
        MLPClassifier(dataDir=url, **FIT).fit(_frame(spark))
        [(path, files)] = deletes
        assert re.fullmatch(rf"sparkneural-test/fits/{FIT_DIRECTORY}", path) and files
        assert _objects(fs) == before
    finally:
        fs.delete_file(beside)


SECRETS = {
    "key and secret": "s3://AKIAEXAMPLE:s3cr3tValue@bucket/dir",
    "key alone": "s3://s3cr3tValue@bucket/dir",
    "secret with a slash": "s3://AKIAEXAMPLE:s3cr3t/Value@bucket/dir",
    "secret_key option": "s3://bucket/dir?region=us-east-1&secret_key=s3cr3tValue",
    "access_key option": "s3a://bucket/dir?access_key=s3cr3tValue",
    "session_token option": "s3://bucket/dir?session_token=s3cr3tValue",
    "azure account key": "abfss://container@account.dfs.core.windows.net/dir?account_key=s3cr3tValue",
    "azure password": "abfs://account:s3cr3tValue@container/dir",
}


@pytest.mark.parametrize("param", ["dataDir", "checkpointDir"])
@pytest.mark.parametrize("url", SECRETS.values(), ids=SECRETS.keys())
def test_a_credential_in_a_directory_uri_is_refused_when_set_without_showing_it(param, url):
    setter = "set" + param[0].upper() + param[1:]
    for setting in (lambda: MLPClassifier(**{param: url}), lambda: getattr(MLPClassifier(), setter)(url),
                    lambda: MLPClassifierModel(**{param: url})):
        with pytest.raises(ValueError, match=rf"^{param}: expected a location without credentials") as error:
            setting()
        assert "s3cr3t" not in str(error.value) and "AWS_ACCESS_KEY_ID" in str(error.value)


def test_a_directory_uri_without_credentials_is_saved_as_given(tmp_path):
    url = "s3://bucket/dir?endpoint_override=127.0.0.1:9000&scheme=http&region=us-east-1"
    container = "abfss://container@account.dfs.core.windows.net/dir"  # the container before '@' is no credential
    MLPClassifier(dataDir=url, checkpointDir=container).save(str(tmp_path / "estimator"))
    with open(tmp_path / "estimator" / "metadata" / "part-00000") as f:
        saved = json.loads(f.readline())["paramMap"]
    assert saved["dataDir"] == url and saved["checkpointDir"] == container


@pytest.fixture
def no_data_dir_conf(spark, tmp_path, monkeypatch):
    """No data directory set in the Spark conf, and an empty temporary directory; the conf is restored after."""
    saved = {k: spark.conf.get(k, None) for k in DATA_DIR_CONFS}
    for key in DATA_DIR_CONFS:
        spark.conf.unset(key)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    try:
        yield tmp_path
    finally:
        for key, value in saved.items():
            if value is not None:
                spark.conf.set(key, value)


def test_the_default_data_directory_is_private_to_the_user(spark, no_data_dir_conf):
    assert spark.conf.get("spark.local.dir", None) is None  # else that is the parent
    directory = data_dir_url(spark, None)
    assert directory == str(no_data_dir_conf / f"sparkneural-{os.getuid()}")
    found = os.lstat(directory)
    assert stat.S_ISDIR(found.st_mode) and found.st_uid == os.getuid() and stat.S_IMODE(found.st_mode) == 0o700
    assert data_dir_url(spark, None) == directory  # the next fit uses it again


def _other_users(path):
    if os.getuid() != 0:
        pytest.skip("only root can give a directory to another user")
    path.mkdir(mode=0o700)
    os.chown(path, 65534, 65534)


def _open_to_group(path):
    path.mkdir()
    path.chmod(0o750)


def _link_to_own_directory(path):
    target = path.parent / "elsewhere"
    target.mkdir(mode=0o700)
    path.symlink_to(target)


@pytest.mark.parametrize("make,why", [
    (_other_users, r"is owned by uid 65534"),
    (_open_to_group, r"has mode 750, which lets other users in"),
    (_link_to_own_directory, r"is a symbolic link"),
])
def test_a_default_data_directory_that_is_not_private_is_refused(spark, no_data_dir_conf, make, why):
    directory = no_data_dir_conf / f"sparkneural-{os.getuid()}"
    make(directory)
    before = os.lstat(directory)
    with pytest.raises(PermissionError, match=rf"^dataDir: the default data directory {re.escape(str(directory))} {why}"):
        data_dir_url(spark, None)
    after = os.lstat(directory)
    assert (after.st_mode, after.st_uid) == (before.st_mode, before.st_uid)  # left as found


def test_a_data_dir_conf_with_a_fragment_is_refused_naming_the_conf(spark, no_data_dir_conf):
    spark.conf.set("spark.sparkneural.dataDir", f"file://{no_data_dir_conf}/a#b")
    try:
        with pytest.raises(ValueError, match=r"^spark\.sparkneural\.dataDir: expected a path, or a URI that names the directory"):
            data_dir_url(spark, None)
    finally:
        spark.conf.unset("spark.sparkneural.dataDir")
