#include "unwedge/io/train_log_format.h"

#include <fstream>

#include "unwedge/core/error.h"
#include "unwedge/core/log.h"

namespace unwedge {

namespace {

// The trainer's own keys; every other numeric key of a line is a term of the method's loss.
constexpr const char* kTrainerKeys[] = {"step", "loss", "val_loss", "lr", "steps_per_s",
                                        "elapsed_s"};

bool is_trainer_key(const std::string& k) {
  for (const char* t : kTrainerKeys) {
    if (k == t) return true;
  }
  return false;
}

double number_or(const nlohmann::json& j, const char* key, double fallback) {
  auto it = j.find(key);
  return it != j.end() && it->is_number() ? it->get<double>() : fallback;
}

}  // namespace

bool TrainLogRecord::operator==(const TrainLogRecord& o) const {
  return step == o.step && loss == o.loss && val_loss == o.val_loss && lr == o.lr &&
         steps_per_s == o.steps_per_s && elapsed_s == o.elapsed_s && terms == o.terms;
}

nlohmann::json train_log_record_to_json(const TrainLogRecord& r) {
  nlohmann::json j = {{"step", r.step}, {"lr", r.lr}, {"steps_per_s", r.steps_per_s},
                      {"elapsed_s", r.elapsed_s}};
  if (r.loss) j["loss"] = *r.loss;
  if (r.val_loss) j["val_loss"] = *r.val_loss;
  for (const auto& [k, v] : r.terms) {
    if (is_trainer_key(k)) throw ValueError("training log: method term '" + k + "' is a trainer key");
    j[k] = v;
  }
  return j;
}

std::optional<TrainLogRecord> train_log_record_from_json(const nlohmann::json& j) {
  if (!j.is_object() || !j.contains("step") || !j.at("step").is_number()) return std::nullopt;
  TrainLogRecord r;
  r.step = int64_t(j.at("step").get<double>());
  if (j.contains("loss") && j.at("loss").is_number()) r.loss = j.at("loss").get<double>();
  if (j.contains("val_loss") && j.at("val_loss").is_number()) {
    r.val_loss = j.at("val_loss").get<double>();
  }
  r.lr = number_or(j, "lr", 0);
  r.steps_per_s = number_or(j, "steps_per_s", 0);
  r.elapsed_s = number_or(j, "elapsed_s", 0);
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it.value().is_number() && !is_trainer_key(it.key())) {
      r.terms[it.key()] = it.value().get<double>();
    }
  }
  return r;
}

std::vector<TrainLogRecord> train_log_read(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw IoError(path + ": cannot open the training log");
  std::vector<TrainLogRecord> out;
  std::string line;
  int64_t n = 0;
  std::optional<std::string> pending_error;
  while (std::getline(f, line)) {
    ++n;
    if (pending_error) throw FormatError(*pending_error);
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) {
      pending_error = path + ": line " + std::to_string(n) + " is not a JSON object";
      continue;  // a truncated last line (a run still writing) is tolerated
    }
    if (auto r = train_log_record_from_json(j)) out.push_back(std::move(*r));
  }
  if (pending_error) log_warn("{} (skipped: the last line)", *pending_error);
  return out;
}

}  // namespace unwedge
