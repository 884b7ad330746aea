// STAR files and RELION 5 tomograms tables: parsing (tables written as RELION 5 writes them, from
// its documented labels), one-line errors naming the file and the column, the written table
// read back, and a training request expanded from a table (one tilt range per tomogram).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "temp_dir.h"
#include "unwedge/core/error.h"
#include "unwedge/io/mrc.h"
#include "unwedge/io/relion.h"
#include "unwedge/io/star.h"
#include "unwedge/train/train_job.h"

namespace unwedge {
namespace {

void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

// A RELION 5 tomograms table as ReconstructTomograms writes it (labels numbered, "loop_ " with a
// trailing blank, version comment), with two tomograms and their half tomograms.
const char* kTomogramsStar = R"(
# version 50001

data_global

loop_ 
_rlnTomoName #1 
_rlnTomoTiltSeriesStarFile #2 
_rlnVoltage #3 
_rlnSphericalAberration #4 
_rlnAmplitudeContrast #5 
_rlnMicrographOriginalPixelSize #6 
_rlnTomoHand #7 
_rlnOpticsGroupName #8 
_rlnTomoTiltSeriesPixelSize #9 
_rlnTomoTomogramBinning #10 
_rlnTomoSizeX #11 
_rlnTomoSizeY #12 
_rlnTomoSizeZ #13 
_rlnTomoReconstructedTomogram #14 
_rlnTomoReconstructedTomogramHalf1 #15 
_rlnTomoReconstructedTomogramHalf2 #16 
TS_01 tilt_series/TS_01.star   300.000000     2.700000     0.100000     0.675000    -1.000000 optics1     1.350000     4.000000   16   16    8 tomograms/rec_TS_01.mrc tomograms/rec_TS_01_half1.mrc tomograms/rec_TS_01_half2.mrc 
TS_02 tilt_series/TS_02.star   300.000000     2.700000     0.100000     0.675000    -1.000000 optics1     1.350000     4.000000   16   16    8 tomograms/rec_TS_02.mrc tomograms/rec_TS_02_half1.mrc tomograms/rec_TS_02_half2.mrc 
)";

// A tilt-series STAR after alignment: nominal stage angles and the refined rlnTomoYTilt.
std::string tilt_series_star(const std::string& name, const std::vector<double>& nominal,
                             double refine_offset) {
  std::string s = "# version 50001\n\ndata_" + name +
                  "\n\nloop_\n_rlnMicrographMovieName #1\n_rlnTomoNominalStageTiltAngle #2\n"
                  "_rlnTomoXTilt #3\n_rlnTomoYTilt #4\n_rlnTomoZRot #5\n";
  for (size_t i = 0; i < nominal.size(); ++i) {
    s += "frames/" + name + "_" + std::to_string(i) + ".eer " + std::to_string(nominal[i]) +
         " 0.000000 " + std::to_string(nominal[i] + refine_offset) + " 85.000000\n";
  }
  return s;
}

class StarTest : public ::testing::Test {
 protected:
  test::TempDir dir{"unwedge_test_star"};

  // The project: tomograms.star in dir, tilt-series STARs in dir/tilt_series.
  std::string write_project(const std::string& table = kTomogramsStar) {
    std::filesystem::create_directories(dir.path / "tilt_series");
    write_text(dir / "tilt_series/TS_01.star",
               tilt_series_star("TS_01", {0, 3, -3, 6, -6, 9, -9, 60, -58}, 0.5));
    write_text(dir / "tilt_series/TS_02.star",
               tilt_series_star("TS_02", {0, 3, -3, -45, 42}, -1.0));
    // The files the table names (empty: only their paths are read here).
    std::filesystem::create_directories(dir.path / "tomograms");
    for (const char* name : {"TS_01", "TS_02"}) {
      for (const char* suffix : {"", "_half1", "_half2"}) {
        write_text(dir / (std::string("tomograms/rec_") + name + suffix + ".mrc"), "");
      }
    }
    write_text(dir / "tomograms.star", table);
    return dir / "tomograms.star";
  }
  std::string error_of(const std::string& table) {
    const std::string path = write_project(table);
    try {
      relion_tomograms_read(path);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  }
};

TEST_F(StarTest, ParsesARelion5TomogramsTable) {
  const StarFile star = star_parse(kTomogramsStar, "t.star");
  ASSERT_EQ(star.blocks.size(), 1u);
  EXPECT_EQ(star.blocks[0].name, "global");
  ASSERT_EQ(star.blocks[0].loops.size(), 1u);
  const StarLoop& l = star.blocks[0].loops[0];
  ASSERT_EQ(l.labels.size(), 16u);
  EXPECT_EQ(l.labels[0], "rlnTomoName");
  EXPECT_EQ(l.labels[15], "rlnTomoReconstructedTomogramHalf2");
  ASSERT_EQ(l.rows.size(), 2u);
  EXPECT_EQ(l.rows[1][0], "TS_02");
  EXPECT_EQ(l.rows[1][2], "300.000000");
  EXPECT_EQ(l.rows[0][l.column("rlnTomoReconstructedTomogramHalf1")],
            "tomograms/rec_TS_01_half1.mrc");
}

TEST_F(StarTest, PairsQuotesTextFieldsAndSeveralBlocks) {
  const StarFile star = star_parse(
      "data_job\n_rlnJobTypeLabel relion.denoisetomo # a comment\n_rlnJobIsContinue 0\n"
      "data_\nloop_\n_a\n_b\n'with blank' \"it's\"\n;line one\nline two\n;\nlast\n",
      "x.star");
  ASSERT_EQ(star.blocks.size(), 2u);
  ASSERT_EQ(star.blocks[0].pairs.size(), 2u);
  EXPECT_EQ(star.blocks[0].pairs[0].second, "relion.denoisetomo");
  EXPECT_EQ(star.blocks[0].pairs[1].first, "rlnJobIsContinue");
  EXPECT_EQ(star.blocks[1].name, "");
  const StarLoop& l = star.blocks[1].loops.at(0);
  ASSERT_EQ(l.rows.size(), 2u);
  EXPECT_EQ(l.rows[0][0], "with blank");
  EXPECT_EQ(l.rows[0][1], "it's");
  EXPECT_EQ(l.rows[1][0], "line one\nline two");
  EXPECT_EQ(l.rows[1][1], "last");
}

TEST_F(StarTest, MalformedTablesAreOneLineErrorsWithFileAndLine) {
  auto err = [](const std::string& text) {
    try {
      star_parse(text, "bad.star");
    } catch (const FormatError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  const std::string ragged = err("data_global\nloop_\n_rlnTomoName\n_rlnTomoSizeX\nTS_01 16\nTS_02\n");
  EXPECT_NE(ragged.find("bad.star:6"), std::string::npos) << ragged;
  EXPECT_NE(ragged.find("3 values"), std::string::npos) << ragged;
  EXPECT_NE(err("_rlnTomoName TS_01\n").find("bad.star:1: label _rlnTomoName before any data_"),
            std::string::npos);
  EXPECT_NE(err("data_a\n_rlnTomoName\n").find("bad.star:2: label _rlnTomoName has no value"),
            std::string::npos);
  EXPECT_NE(err("data_a\n_x 'open\n").find("bad.star:2: quoted value"), std::string::npos);
  EXPECT_NE(err("data_a\nTS_01\n").find("bad.star:2: value 'TS_01' outside"), std::string::npos);
  for (const std::string& e : {ragged, err("data_a\nTS_01\n")}) {
    EXPECT_EQ(e.find('\n'), std::string::npos) << e;
  }
}

TEST_F(StarTest, WrittenTextParsesBackToTheSameTable) {
  StarFile star;
  star.blocks.push_back({"global", {{"rlnJobTypeLabel", "unwedge restore"}}, {}});
  star.blocks[0].loops.push_back(
      {{"rlnTomoName", "rlnTomoReconstructedTomogramDenoised"},
       {{"TS_01", "out dir/TS_01.mrc"}, {"_odd", ""}, {"data_x", "say \"hi\""}}});
  const StarFile back = star_parse(star_format(star), "w.star");
  ASSERT_EQ(back.blocks.size(), 1u);
  EXPECT_EQ(back.blocks[0].pairs, star.blocks[0].pairs);
  EXPECT_EQ(back.blocks[0].loops[0].labels, star.blocks[0].loops[0].labels);
  EXPECT_EQ(back.blocks[0].loops[0].rows, star.blocks[0].loops[0].rows);
}

TEST_F(StarTest, ValuesWithLineBreaksAreWrittenAsTextFieldsAndReadBack) {
  // Found by fuzz_star: a ';' text field read from a file could not be written back.
  StarFile star;
  star.blocks.push_back({"global", {{"rlnJobNote", "line one\n  line two\n"}}, {}});
  star.blocks[0].loops.push_back(
      {{"rlnTomoName", "rlnNote"}, {{"TS_01", ";first\nsecond"}, {"TS_02", "plain"}}});
  const std::string text = star_format(star);
  EXPECT_NE(text.find("\n;line one\n  line two\n\n;"), std::string::npos) << text;
  const StarFile back = star_parse(text, "w.star");
  ASSERT_EQ(back.blocks.size(), 1u);
  EXPECT_EQ(back.blocks[0].pairs, star.blocks[0].pairs);
  EXPECT_EQ(back.blocks[0].loops.at(0).rows, star.blocks[0].loops[0].rows);
  EXPECT_EQ(star_format(back), text);
  // Quotes followed by any blank (a form feed too), and values that neither quote can hold.
  star.blocks[0].loops[0].rows[1][1] = "c\"\fw";
  star.blocks[0].loops[0].rows[0][1] = "it's \"both\" ok";
  const StarFile quoted = star_parse(star_format(star), "q.star");
  EXPECT_EQ(quoted.blocks.at(0).loops.at(0).rows, star.blocks[0].loops[0].rows);
  // Carriage returns at the ends of a text field's lines are line ends, however many there are.
  const StarFile cr = star_parse("data_\n_rlnNote\n;one\r\r\ntwo\r\n;\n", "cr.star");
  EXPECT_EQ(cr.blocks.at(0).pairs.at(0).second, "one\ntwo");
  // A line that starts with ';' cannot be inside a text field: refused, not written wrong.
  star.blocks[0].pairs[0].second = "a\n;b";
  EXPECT_THROW(star_format(star), ValueError);
}

TEST_F(StarTest, ReadsTomogramsHalvesAnglesAndVoxelSize) {
  const RelionTomograms t = relion_tomograms_read(write_project());
  ASSERT_EQ(t.tomograms.size(), 2u);
  const RelionTomogram& a = t.tomograms[0];
  EXPECT_EQ(a.name, "TS_01");
  // Relative paths that are not under the current folder are read beside the STAR.
  EXPECT_EQ(a.half1, dir / "tomograms/rec_TS_01_half1.mrc");
  EXPECT_EQ(a.tilt_series_star, dir / "tilt_series/TS_01.star");
  EXPECT_DOUBLE_EQ(a.voxel_size, 1.35 * 4.0);
  // rlnTomoYTilt (refined) wins over the nominal stage angle: nominal + 0.5.
  ASSERT_EQ(a.angles.size(), 9u);
  EXPECT_NEAR(*std::min_element(a.angles.begin(), a.angles.end()), -57.5, 1e-9);
  EXPECT_NEAR(*std::max_element(a.angles.begin(), a.angles.end()), 60.5, 1e-9);
  const RelionTomogram& b = t.tomograms[1];
  EXPECT_NEAR(*std::min_element(b.angles.begin(), b.angles.end()), -46.0, 1e-9);
  EXPECT_NEAR(*std::max_element(b.angles.begin(), b.angles.end()), 41.0, 1e-9);
}

TEST_F(StarTest, NominalAnglesWhenTheSeriesIsNotAligned) {
  write_project();
  write_text(dir / "tilt_series/TS_02.star",
             "data_TS_02\nloop_\n_rlnMicrographMovieName\n_rlnTomoNominalStageTiltAngle\n"
             "a.eer -30.0\nb.eer 0.0\nc.eer 51.0\n");
  const RelionTomograms t = relion_tomograms_read(dir / "tomograms.star");
  EXPECT_EQ(t.tomograms[1].angles, (std::vector<double>{-30.0, 0.0, 51.0}));
}

TEST_F(StarTest, MissingAndMisspeltColumnsNameTheColumnAndTheFile) {
  std::string table = kTomogramsStar;
  const std::string file = dir / "tomograms.star";
  // A misspelt half column.
  std::string typo = table;
  typo.replace(typo.find("_rlnTomoReconstructedTomogramHalf1"),
               std::string("_rlnTomoReconstructedTomogramHalf1").size(),
               "_rlnTomoReconstructedTomogramHaf1");
  const std::string e1 = error_of(typo);
  EXPECT_EQ(e1, file + ": unknown column _rlnTomoReconstructedTomogramHaf1 in data_global (did "
                       "you mean _rlnTomoReconstructedTomogramHalf1?)");
  // No rlnTomoName.
  std::string noname = table;
  noname.replace(noname.find("_rlnTomoName #1"), 15, "_rlnTomoLabel #1");
  EXPECT_EQ(error_of(noname), file + ": data_global has no column _rlnTomoName");
  // A column a job needs and the table lacks.
  const RelionTomograms t = relion_tomograms_read(write_project());
  try {
    relion_column(t, "rlnTomoReconstructedTomogramDenoised", "what the test needs");
    ADD_FAILURE() << "no error";
  } catch (const FormatError& e) {
    EXPECT_EQ(std::string(e.what()), file + ": data_global has no column "
                                            "_rlnTomoReconstructedTomogramDenoised (what the "
                                            "test needs)");
  }
  // A tilt-series STAR without angles; a duplicate name; a non-numeric pixel size.
  write_project();
  write_text(dir / "tilt_series/TS_02.star", "data_TS_02\nloop_\n_rlnMicrographMovieName\na.eer\n");
  try {
    relion_tomograms_read(file);
    ADD_FAILURE() << "no error";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find(dir / "tilt_series/TS_02.star"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("_rlnTomoNominalStageTiltAngle"), std::string::npos);
  }
  std::string dup = table;
  dup.replace(dup.find("TS_02 tilt_series/TS_02.star"), 5, "TS_01");
  dup.replace(dup.find("tilt_series/TS_02.star"), 22, "tilt_series/TS_01.star");
  EXPECT_EQ(error_of(dup), file + ": _rlnTomoName TS_01 appears twice");
  std::string px = table;
  px.replace(px.find("1.350000"), 8, "1,350000");
  EXPECT_EQ(error_of(px), file + ": tomogram TS_01, _rlnTomoTiltSeriesPixelSize: '1,350000' is "
                                 "not a number");
}

TEST_F(StarTest, OutputTableKeepsTheGlobalColumnsAndAddsTheDenoisedTomograms) {
  const RelionTomograms t = relion_tomograms_read(write_project());
  const StarFile out = relion_tomograms_with_outputs(
      t, {{"restored/TS_01.mrc", {16, 16, 8}, 5.4}, {"restored/TS_02.mrc", {16, 16, 8}, 5.4}});
  const StarFile back = star_parse(star_format(out), "out.star");
  const StarLoop& l = back.block("global")->loops.at(0);
  for (const char* label : {"rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast",
                            "rlnTomoTiltSeriesStarFile", "rlnTomoHand", "rlnTomoSizeZ",
                            "rlnTomoReconstructedTomogramHalf1"}) {
    EXPECT_GE(l.column(label), 0) << label;
  }
  const int c = l.column("rlnTomoReconstructedTomogramDenoised");
  ASSERT_GE(c, 0);
  EXPECT_EQ(l.rows[1][size_t(c)], "restored/TS_02.mrc");
  EXPECT_EQ(l.rows[0][size_t(l.column("rlnVoltage"))], "300.000000");
  // The input's tomogram column is kept (RELION 5 reads both).
  EXPECT_EQ(l.rows[0][size_t(l.column("rlnTomoReconstructedTomogram"))],
            "tomograms/rec_TS_01.mrc");
}

TEST_F(StarTest, MissingPixelSizeAndBinningAreFilledFromTheOutputs) {
  const std::string table =
      "data_global\nloop_\n_rlnTomoName\n_rlnTomoReconstructedTomogram\nA a.mrc\nB b.mrc\n";
  write_text(dir / "t.star", table);
  const RelionTomograms t = relion_tomograms_read(dir / "t.star");
  const StarFile out = relion_tomograms_with_outputs(t, {{"x/A.mrc", {32, 24, 8}, 10.0},
                                                         {"x/B.mrc", {32, 24, 16}, 10.0}});
  const StarLoop& l = out.block("global")->loops.at(0);
  EXPECT_EQ(l.rows[1][size_t(l.column("rlnTomoSizeZ"))], "16");
  EXPECT_EQ(l.rows[0][size_t(l.column("rlnTomoSizeX"))], "32");
  EXPECT_EQ(l.rows[0][size_t(l.column("rlnTomoTiltSeriesPixelSize"))], "10.000000");
  EXPECT_EQ(l.rows[0][size_t(l.column("rlnTomoTomogramBinning"))], "1.000000");
}

TEST_F(StarTest, TrainingRequestFromATableHasOneTiltRangePerTomogram) {
  const std::string star = write_project();
  TrainFilesOptions f;
  f.star = star;
  f.train.method = "n2n";
  f.tilt_from_files = true;
  f.model = dir / "m.uwm";
  const TrainFilesOptions x = train_files_from_star(f);
  EXPECT_TRUE(x.star.empty());
  EXPECT_TRUE(x.in.empty());
  EXPECT_EQ(x.even, (std::vector<std::string>{dir / "tomograms/rec_TS_01_half1.mrc",
                                              dir / "tomograms/rec_TS_02_half1.mrc"}));
  EXPECT_EQ(x.odd[1], dir / "tomograms/rec_TS_02_half2.mrc");
  EXPECT_EQ(x.tilt_ranges, (std::vector<double>{-57.5, 60.5, -46.0, 41.0}));
  // A single-tomogram method trains on rlnTomoReconstructedTomogram.
  f.train.method = "n2v";
  const TrainFilesOptions y = train_files_from_star(f);
  EXPECT_EQ(y.in[1], dir / "tomograms/rec_TS_02.mrc");
  EXPECT_TRUE(y.even.empty());
  // A range given by the caller wins over the table's angles.
  f.tilt_from_files = false;
  EXPECT_TRUE(train_files_from_star(f).tilt_ranges.empty());
  // Files and a table together are refused.
  f.in = {"x.mrc"};
  EXPECT_THROW(train_files_from_star(f), ValueError);
}

TEST_F(StarTest, TrainingPlanFromATableReadsEachTomogramWithItsOwnWedge) {
  const std::string star = write_project();
  torch::manual_seed(3);
  for (const char* name : {"TS_01", "TS_02"}) {
    for (const char* half : {"half1", "half2"}) {
      Volume v;
      v.data = torch::randn({8, 16, 16});
      MrcWriteOptions wo;
      wo.overwrite = true;
      mrc_write(dir / (std::string("tomograms/rec_") + name + "_" + half + ".mrc"), v, wo);
    }
  }
  TrainFilesOptions f;
  f.star = star;
  f.train.method = "n2n";
  f.tilt_from_files = true;
  f.model = dir / "m.uwm";
  const TrainFilesPlan plan = train_files_prepare(f);
  ASSERT_EQ(plan.inputs.size(), 2u);
  ASSERT_TRUE(plan.inputs[1].wedge.has_value());
  EXPECT_DOUBLE_EQ(plan.inputs[0].wedge->tilt_min_deg, -57.5);
  EXPECT_DOUBLE_EQ(plan.inputs[1].wedge->tilt_min_deg, -46.0);
  EXPECT_DOUBLE_EQ(plan.inputs[1].wedge->tilt_max_deg, 41.0);
  EXPECT_EQ(plan.inputs[1].a.nz(), 8);
  // A half the table names but the disk lacks: the error names the file.
  std::filesystem::remove(dir / "tomograms/rec_TS_02_half2.mrc");
  try {
    train_files_prepare(f);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("rec_TS_02_half2.mrc"), std::string::npos) << e.what();
  }
}

TEST_F(StarTest, AreTomo3HalvesFindTheTiltFileOfTheirTomogram) {
  write_text(dir / "TS_7.tlt", "-50\n0\n65\n");
  for (const char* f : {"TS_7_EVN_Vol.mrc", "TS_7_ODD_Vol.mrc", "TS_8_EVN_Vol.mrc"}) {
    write_text(dir / f, "");
  }
  EXPECT_EQ(train_tilt_file_beside(dir / "TS_7_EVN_Vol.mrc"), dir / "TS_7.tlt");
  EXPECT_EQ(train_tilt_file_beside(dir / "TS_7_ODD_Vol.mrc"), dir / "TS_7.tlt");
  EXPECT_EQ(train_tilt_file_beside(dir / "TS_8_EVN_Vol.mrc"), "");
}


TEST_F(StarTest, OutputRowFromAnMrcHeader) {
  Volume v;
  v.data = torch::zeros({3, 4, 5});  // [Z, Y, X]
  v.meta.voxel_size = {2.5, 2.5, 2.5};
  MrcWriteOptions wo;
  wo.overwrite = true;
  const std::string path = dir / "out.mrc";
  mrc_write(path, v, wo);
  const RelionOutput r = relion_output_from_mrc(path);
  EXPECT_EQ(r.tomogram, path);
  EXPECT_EQ(r.size_xyz, (std::array<int64_t, 3>{5, 4, 3}));
  EXPECT_NEAR(r.voxel_size, 2.5, 1e-6);
  EXPECT_THROW(relion_output_from_mrc(dir / "missing.mrc"), IoError);
}

}  // namespace
}  // namespace unwedge
