//! Integration suite: runs the real `sbx-exec` binary. Each module proves one guarantee of
//! `docs/DESIGN.md` from both sides (the attack fails inside, the same action succeeds outside).
//!
//! The tests run in the order listed below. A test is a `pub fn NAME() -> Result<(), String>` in a
//! module here (or in a file under its directory, re-exported by it), listed as `module::NAME`;
//! helpers with that signature are `pub(crate)`. The first test fails for any test not listed
//! (`harness::every_suite_test_is_registered`), so none can be forgotten.

mod attacks;
mod docs_tests;
mod faults;
mod faults_io;
mod g1_bound;
mod g1_secrets;
mod g1_tools;
mod g2_visibility;
mod g3_bun;
mod g3_control;
mod g3_jupyter;
mod g3_keep_fd;
mod g4_landlock;
mod g5_launcher;
mod g5_request;
mod g6_fail_closed;
mod g7_capture;
mod g7_channels;
mod g7_identity;
mod g7_net;
mod g7_run;
mod g7_sys;
mod g8_deputy;
mod g8_files;
mod g8_modes;
mod g9_gate;
mod g9_ops;
mod harness;
mod limits;
mod perf_walls;
mod persist;
mod policy_tests;
mod pool;
mod support;

use harness::TestFn;

macro_rules! tests {
    ($($m:ident :: $f:ident),* $(,)?) => {
        &[$((concat!(stringify!($m), "::", stringify!($f)), $m::$f as TestFn)),*]
    };
}

fn main() {
    harness::main(tests![
        harness::every_suite_test_is_registered,
        harness::a_forgotten_suite_test_is_found,
        policy_tests::every_shipped_policy_checks,
        policy_tests::weak_contexts_are_named_and_extends_starts_from_a_safe_one,
        policy_tests::show_prints_embedded_default_verbatim,
        policy_tests::show_one_context,
        policy_tests::bad_policies_name_file_line_column,
        policy_tests::version_flag,
        g1_bound::bound_secret_is_never_delivered_in_clear,
        g1_bound::real_launch_adds_the_key_for_its_host_only,
        g1_bound::real_launch_refuses_a_bound_host_with_a_wrong_certificate,
        g1_bound::real_launch_re_signs_the_aws_cli_for_moto,
        g9_gate::nothing_comes_back_through_the_gate,
        g9_gate::smuggling_and_host_confusion_are_refused,
        g9_gate::a_bound_key_never_mints_credentials,
        g9_gate::a_refusal_names_the_rule_never_an_address,
        g9_gate::a_head_trickled_inside_tls_is_dropped,
        g9_gate::a_narrowed_binding_adds_the_key_to_its_requests_only,
        g9_ops::platform_operations_keep_the_handlers_secret,
        g9_ops::platform_operations_refused_without_ops_or_control_plane,
        g9_ops::a_persistent_context_calls_platform_operations,
        g1_secrets::platform_receives_handed_secret,
        g1_secrets::json_secrets_round_trip_exactly,
        g1_secrets::user_never_sees_the_callers_environment,
        g1_secrets::injection_variables_are_dropped,
        g1_secrets::ld_preload_is_dropped,
        g1_secrets::user_context_refuses_secrets_without_echo,
        g1_secrets::malformed_secrets_fail_without_echo,
        g1_secrets::secrets_fd_is_closed_before_exec,
        g1_secrets::secret_not_in_argv_of_any_process,
        g1_secrets::exec_allow_is_checked_before_secrets_are_read,
        g1_secrets::audit_log_has_names_never_values,
        g1_secrets::audit_to_stderr_is_one_json_line,
        g1_secrets::redaction_masks_values_split_and_base64,
        g1_secrets::secrets_files_round_trip_and_stay_private,
        g1_secrets::secrets_files_belong_to_the_run_as_user,
        g1_secrets::injection_secret_names_are_refused,
        g1_tools::psql_gets_password_only_from_the_secrets_fd,
        g1_tools::psql_reads_pgpassfile_from_secrets_files,
        g1_tools::aws_cli_gets_credentials_only_from_the_secrets_fd,
        g2_visibility::ps_shows_only_the_context,
        g2_visibility::kill_pkill_and_kill_all_fail,
        g2_visibility::ptrace_and_proc_of_outside_fail,
        g2_visibility::platform_secret_invisible_to_user,
        g5_launcher::exit_codes_pass_through,
        g5_launcher::own_errors_are_125_126_127,
        g5_launcher::signals_reach_the_target,
        g5_launcher::sigterm_default_gives_143,
        g5_launcher::sigkill_of_launcher_leaves_no_process,
        g5_launcher::zombies_are_reaped,
        g5_launcher::only_stdio_fds_reach_the_target,
        g5_launcher::closed_standard_fds_are_reopened_on_dev_null,
        g5_launcher::stdio_streams_unbuffered,
        g5_launcher::status_fd_reports_json,
        g5_launcher::timeout_gives_124,
        pool::a_pooled_call_keeps_every_wall,
        pool::launch_cases_pass_pooled,
        pool::a_prepared_sandbox_serves_one_call,
        pool::claims_are_roots_and_never_wait,
        pool::a_call_from_another_plan_builds_its_own,
        g5_request::env_option_sets_only_allowed_names,
        g5_request::cwd_option_moves_the_command_or_refuses,
        g5_request::hidden_caller_directory_starts_in_workdir,
        g5_request::timeout_option_is_at_most_the_policys,
        g5_request::command_is_found_as_the_sandbox_sees_path,
        g5_request::unknown_option_is_an_error_not_a_command,
        g6_fail_closed::refuses_when_namespaces_are_refused,
        g6_fail_closed::degrade_runs_and_warns,
        g6_fail_closed::net_none_has_only_loopback,
        g6_fail_closed::identity_ids_missing_fail_closed_and_probe_names_them,
        g7_identity::socket_peers_see_the_mapped_uid,
        g7_identity::setuid_bits_set_inside_are_not_root_outside,
        g7_identity::work_area_is_shared_with_the_control_side,
        g7_identity::fresh_root_made_work_areas_are_writable,
        g7_identity::agent_and_notebook_are_nobody_outside,
        g7_identity::inside_it_is_still_root,
        g7_identity::python_pip_and_git_work,
        g7_identity::persistent_calls_are_mapped_too,
        g7_identity::without_user_namespaces_degrade_runs_as_the_host_uid,
        g7_net::egress_reaches_allowed_hosts_only_through_the_proxy,
        g7_net::internal_destinations_are_refused_in_every_spelling,
        g7_net::user_cannot_squat_a_port_platform_connects_to,
        g7_net::abstract_sockets_and_connections_of_the_host_are_invisible,
        g7_net::published_port_serves_from_the_sandbox,
        g7_net::published_port_connections_end_when_idle,
        g7_net::the_gate_runs_apart_unprivileged,
        g7_net::the_gate_started_by_hand_refuses_cleanly,
        g7_net::an_address_the_container_gains_later_is_refused,
        g7_net::one_call_cannot_starve_another,
        g7_net::a_trickled_head_is_dropped,
        g7_net::net_policy_errors_name_the_place,
        g7_net::persistent_context_publishes_a_dev_server_to_every_call,
        g7_net::persistent_join_egresses_through_the_keepers_proxy,
        g7_net::killed_keeper_takes_its_net_helper,
        g7_net::persistent_net_stop_leaves_nothing_behind,
        g7_net::a_lost_net_helper_or_record_loses_nothing,
        g7_net::live_rules_open_and_close_a_running_context,
        g7_net::a_replaced_net_helper_keeps_the_live_rules,
        g7_capture::clients_without_proxy_variables_reach_allowed_names_only,
        g7_capture::a_server_name_must_lead_to_the_address_and_raw_tcp_works,
        g7_run::run_holds_no_secret_or_socket_of_the_container,
        g7_run::var_tmp_holds_nothing_of_the_container,
        g7_sys::sys_shows_only_the_sandboxs_own_network,
        g7_sys::sys_shows_only_the_calls_own_cgroups,
        g7_sys::persistent_context_on_the_host_network_sees_only_its_own_cgroups,
        g7_sys::a_runtime_still_finds_its_memory_limit,
        g3_control::ports_are_held_and_handed_over,
        g3_control::restart_keeps_the_ports,
        g3_control::sigterm_stops_gracefully_then_kills,
        g3_control::gives_up_after_max_restarts,
        g3_control::as_pid1_it_reaps_adopted_zombies,
        g3_control::services_get_their_ports_and_restart,
        g3_bun::bun_control_plane_end_to_end,
        g3_jupyter::jupyter_serves_the_held_port_confined,
        g3_keep_fd::listening_socket_reaches_the_target_as_fd_3,
        g3_keep_fd::keep_fd_refuses_what_it_must_not_pass,
        attacks::system_files_cannot_be_written,
        attacks::ld_so_preload_cannot_be_created,
        attacks::launcher_and_policy_are_read_only_in_platform_too,
        attacks::proc_and_sys_cannot_be_written,
        attacks::kernel_files_are_masked,
        perf_walls::caps_are_cut_to_the_kept_set,
        perf_walls::every_sys_mount_is_read_only,
        perf_walls::the_launcher_loads_no_shared_library,
        perf_walls::a_policy_through_a_symlink_is_still_refused,
        attacks::cgroups_cannot_be_created,
        attacks::mount_fails_inside,
        attacks::pid1_of_sandbox_is_untouchable,
        attacks::user_namespaces_cannot_be_created,
        attacks::tiocsti_cannot_inject_into_callers_tty,
        attacks::nested_sbx_exec_gives_nothing_back,
        attacks::hidden_cwd_is_not_leaked,
        attacks::symlinked_policy_paths_are_refused,
        attacks::platform_refuses_tampered_programs,
        attacks::platform_refuses_programs_user_code_can_write,
        attacks::run_as_switches_user_for_good,
        g7_channels::only_four_socket_families_exist_inside,
        g7_channels::host_pty_input_cannot_be_read,
        g7_channels::host_device_nodes_are_unreachable,
        g7_channels::own_ptys_work,
        g7_channels::standard_devices_work,
        g7_channels::setuid_and_device_nodes_in_shared_areas_are_inert,
        g7_channels::fs_devices_are_checked_at_launch,
        g4_landlock::abstract_unix_sockets_outside_are_unreachable,
        g4_landlock::denied_ports_cannot_be_bound_or_called,
        g8_deputy::links_where_user_code_writes_are_refused,
        g8_deputy::swapped_link_never_runs_in_place_of_the_checked_program,
        g8_deputy::nothing_planted_in_the_work_area_runs,
        g8_deputy::landlock_executes_only_system_programs,
        g8_deputy::platform_cannot_write_system_programs,
        g8_deputy::platform_does_not_write_through_planted_links,
        g8_deputy::planted_git_hook_does_not_run_in_platform,
        g8_deputy::env_interpreter_found_where_user_code_writes_is_refused,
        g8_deputy::allowlisted_tools_run_through_links_and_scripts,
        g8_files::a_planted_link_never_redirects_a_write,
        g8_files::fifos_and_devices_never_block_an_operation,
        g8_files::every_operation_answers_with_its_exit_code_and_kind,
        g8_files::what_the_control_plane_writes_belongs_to_user_code,
        g8_files::every_confined_context_runs_the_tool,
        g8_files::setuid_callers_are_admitted_as_for_commands,
        g8_files::a_hundred_megabytes_stream_through_in_bounded_memory,
        g8_modes::setuid_caller_runs_as_itself_without_capabilities,
        g8_modes::setuid_refuses_policy_flag,
        g8_modes::setuid_refuses_persistent_contexts,
        g8_modes::setuid_environment_is_allowlist_only,
        g8_modes::setuid_enters_the_cwd_as_the_caller,
        g8_modes::setuid_resets_fds_umask_limits_and_signals,
        g8_modes::setuid_to_a_non_root_owner_is_refused,
        g8_modes::setuid_survives_a_tiny_stack_limit,
        g8_modes::setuid_killed_launcher_leaves_the_start_record,
        g8_modes::setuid_file_size_limit_cannot_cut_the_audit_log,
        g8_modes::setuid_caller_sees_nothing_root_only,
        g8_modes::allow_callers_admits_only_listed,
        g8_modes::system_policy_writable_by_others_is_refused,
        g8_modes::rootless_runs_for_an_unprivileged_user,
        g8_modes::probe_agrees_with_launches,
        g8_modes::sys_admin_alone_runs_every_context,
        docs_tests::readme_extractor_skips_only_what_is_marked,
        docs_tests::readme_commands_run_as_documented,
        docs_tests::every_shipped_policy_launches_its_one_shot_contexts,
        docs_tests::ci_runner_build_is_offline_and_deploy_takes_only_its_secrets,
        docs_tests::bash_completes_context_names_from_the_policy,
        docs_tests::bash_completes_subcommands_and_running_contexts,
        docs_tests::fish_completes_context_names,
        docs_tests::zsh_context_completer_lists_the_policys_contexts,
        docs_tests::completions_pass_each_shells_syntax_check,
        docs_tests::man_pages_render_without_warnings,
        docs_tests::version_names_the_git_revision,
        docs_tests::help_has_examples_and_exit_codes,
        persist::background_process_survives_and_is_killed_later,
        persist::a_join_that_changes_ids_completes_under_strace,
        persist::other_contexts_do_not_see_it,
        persist::concurrent_first_calls_make_one_keeper,
        persist::stop_leaves_nothing_running,
        persist::dead_keeper_is_replaced,
        persist::fork_bomb_hits_pids_max,
        persist::exit_status_and_status_fd_pass_through,
        persist::killed_launcher_takes_its_command_but_not_background,
        persist::persist_policy_is_validated,
        persist::forged_sigterm_from_inside_does_not_stop_the_keeper,
        persist::freeze_and_swap_cannot_steer_a_join_outside,
        persist::a_lost_record_loses_no_process,
        limits::one_shot_fork_loop_stops_at_pids_max,
        limits::oom_ends_the_call_not_the_control_plane,
        limits::confined_processes_have_a_high_oom_score_adj,
        limits::no_call_leaves_a_cgroup_behind,
        limits::cgroup_v2_for_real,
        limits::status_fd_names_the_reason,
        faults::killed_first_caller_leaves_no_orphan_keeper,
        faults::transient_errors_never_forget_a_live_keeper,
        faults::killed_one_shot_and_join_calls_leave_nothing,
        faults::killed_joins_that_change_ids_leave_no_command,
        faults_io::secrets_writers_cannot_hang_the_call,
        faults_io::full_status_pipe_does_not_delay_the_exit,
        faults_io::stop_sticks_and_tells_calls_in_flight,
        faults_io::killed_keeper_ends_calls_in_flight_with_a_message,
        faults_io::runtime_dir_faults_name_their_cause,
        faults_io::limits_and_missing_proc_name_the_real_cause,
        faults_io::control_crash_loop_keeps_the_port,
        faults_io::status_fd_on_a_stuck_terminal_does_not_block,
        faults_io::policy_reads_are_bounded_and_never_block,
        faults_io::joins_work_on_a_read_only_runtime_dir,
        faults_io::refused_one_shot_calls_leave_no_cgroup,
        faults_io::required_secrets_refuse_calls_that_lack_them,
    ]);
}
